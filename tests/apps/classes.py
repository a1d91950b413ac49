"""Classes for the Cls tests: parameters, lifecycle hooks, concurrency, batching, generators."""

import asyncio
import os
import threading

import firebox

app = firebox.App("test-classes")


def container_id():
    return os.environ.get("FIREBOX_CONTAINER_ID")


@app.cls()
class Params:
    n: int = firebox.parameter(default=7)
    s: str = firebox.parameter(default="hi")
    b: bytes = firebox.parameter(default=b"\x00")
    flag: bool = firebox.parameter(default=False)

    @firebox.method()
    def values(self):
        return self.n, self.s, self.b, self.flag

    @firebox.method()
    def container(self):
        return container_id()

    @firebox.method()
    def scaled(self, x, factor=1):
        return self.n * x * factor

    @firebox.method()
    def count(self, k):
        yield from range(k)

    @firebox.method()
    async def async_values(self):
        await asyncio.sleep(0)
        return self.n, self.s


@app.cls()
class Required:
    name: str = firebox.parameter()

    @firebox.method()
    def hello(self):
        return f"hello {self.name}"


@app.cls()
class Lifecycle:
    # Declared before the snap=True hook, and still run after it.
    @firebox.enter()
    def late(self):
        self.order = [*getattr(self, "order", []), "enter"]

    @firebox.enter(snap=True)
    def early(self):
        self.order = [*getattr(self, "order", []), "snap"]

    @firebox.method()
    def seen(self):
        return self.order, firebox.is_local()


_barriers: dict[str, threading.Barrier] = {}
_lock = threading.Lock()


@app.cls(max_containers=1)
@firebox.concurrent(max_inputs=3)
class Together:
    @firebox.method()
    def meet(self, key, n):
        with _lock:
            barrier = _barriers.setdefault(key, threading.Barrier(n, timeout=20))
        barrier.wait()
        return container_id(), threading.get_ident()


@app.cls()
class Doubler:
    @firebox.batched(max_batch_size=4, wait_ms=300)
    def double(self, xs):
        return [(2 * x, len(xs)) for x in xs]


class Greeter:  # not an app class: its methods are inherited, as Modal allows
    greeting = "hello"

    @firebox.enter()
    def ready(self):
        self.suffix = "!"
        self.hooks = [*getattr(self, "hooks", []), "base"]

    @firebox.method()
    def greet(self, name):
        return f"{self.greeting} {name}{self.suffix}"

    @firebox.method()
    def kind(self):
        return "base"


@app.cls()
class LoudGreeter(Greeter):
    greeting = "HELLO"

    @firebox.enter()
    def ready(self):  # overrides the base's hook: only this one runs
        self.suffix = "!"
        self.hooks = [*getattr(self, "hooks", []), "loud"]

    @firebox.method()
    def kind(self):
        return "subclass"

    @firebox.method()
    def hooks_run(self):
        return self.hooks
