"""A container's input slots (firebox/runtime/inputs.py), on a real event loop and real
threads: sync inputs back to back in lanes, async ones as tasks, max_inputs shared by both,
arrival order kept, and cancellation of inputs waiting, queued to a lane or running."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from firebox import wire
from firebox.runtime.inputs import Inputs
from firebox.wire import user_code


class Probe:
    """Counts how many inputs run at once, and what the slots reported."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.order: list[Any] = []
        self.outputs: list[tuple[str, str, Any]] = []

    def enter(self, x: Any) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.order.append(x)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1

    def report(self, input_id: str, status: str, data: bytes | None,
               exec_seconds: float | None) -> None:
        value = None
        if status == wire.SUCCESS:
            value = wire.deserialize(data, "value")
        elif status == wire.ITEM:
            value = wire.deserialize(data, "item")
        self.outputs.append((input_id, status, value))

    def ids(self, status: str = wire.SUCCESS) -> list[str]:
        return [i for i, s, _ in self.outputs if s == status]


def item(n: int, *args: Any, method: str | None = None) -> dict[str, Any]:
    return {"id": f"in-{n}", "call_id": f"fc-{n}", "method": method,
            "args": wire.serialize((args, {}), "arguments")}


async def settle(inputs: Inputs, timeout: float = 10) -> None:
    await inputs.drained(timeout)
    await asyncio.sleep(0.02)  # reports scheduled onto the loop
    assert not inputs.pending()


def run(main: Any) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("max_inputs", [1, 3])
def test_sync_inputs_run_in_order_with_at_most_max_inputs_at_once(max_inputs):
    async def main() -> None:
        probe = Probe()

        def f(x):
            probe.enter(x)
            time.sleep(0.01)
            probe.leave()
            return x * 2

        slots = Inputs(max_inputs, lambda m: f, probe.report, asyncio.get_running_loop())
        for n in range(12):
            slots.add(item(n, n))
        await settle(slots)
        assert probe.most == max_inputs
        if max_inputs == 1:
            assert probe.order == list(range(12))
        assert sorted(probe.ids()) == sorted(f"in-{n}" for n in range(12))
        assert {i: v for i, _, v in probe.outputs} == {f"in-{n}": n * 2 for n in range(12)}

    run(main)


def test_sync_and_async_methods_share_the_slots_and_keep_arrival_order():
    async def main() -> None:
        probe = Probe()

        def sync_m(x):
            probe.enter(x)
            time.sleep(0.005)
            probe.leave()
            return x

        async def async_m(x):
            probe.enter(x)
            await asyncio.sleep(0.005)
            probe.leave()
            return x

        methods = {"s": sync_m, "a": async_m}
        slots = Inputs(1, methods.__getitem__, probe.report, asyncio.get_running_loop())
        for n in range(10):
            slots.add(item(n, n, method="s" if n % 3 else "a"))
        await settle(slots)
        assert probe.most == 1  # never an async input beside a sync one
        assert probe.order == list(range(10))
        assert len(probe.ids()) == 10

    run(main)


def test_each_input_sees_its_own_id_and_failures_are_reported():
    async def main() -> None:
        probe = Probe()

        def f(x):
            if x == "boom":
                raise ValueError("no")
            return user_code.current_input.get(), user_code.current_call.get()

        slots = Inputs(2, lambda m: f, probe.report, asyncio.get_running_loop())
        slots.add(item(1, "a"))
        slots.add(item(2, "boom"))
        slots.add(item(3, "b"))
        await settle(slots)
        results = {i: v for i, s, v in probe.outputs if s == wire.SUCCESS}
        assert results == {"in-1": ("in-1", "fc-1"), "in-3": ("in-3", "fc-3")}
        assert probe.ids(wire.FAILURE) == ["in-2"]

    run(main)


def test_a_missing_method_fails_its_input_without_taking_a_slot():
    async def main() -> None:
        probe = Probe()

        def callable_for(method):
            if method != "ok":
                raise ValueError(f"no method {method}")
            return lambda: 1

        slots = Inputs(1, callable_for, probe.report, asyncio.get_running_loop())
        slots.add(item(1, method="nope"))
        slots.add(item(2, method="ok"))
        await settle(slots)
        assert probe.ids(wire.FAILURE) == ["in-1"] and probe.ids() == ["in-2"]

    run(main)


def test_generator_items_come_before_their_final_output():
    async def main() -> None:
        probe = Probe()

        def gen(n):
            yield from range(n)

        slots = Inputs(1, lambda m: gen, probe.report, asyncio.get_running_loop())
        slots.add(item(1, 5))
        await settle(slots)
        assert [(s, v) for _, s, v in probe.outputs] == [
            *((wire.ITEM, (k, v)) for k, v in enumerate(range(5))), (wire.SUCCESS, None)]

    run(main)


def test_cancelling_waiting_and_queued_inputs_drops_them_and_keeps_the_order():
    async def main() -> None:
        probe = Probe()
        gate = threading.Event()

        def f(x):
            probe.enter(x)
            gate.wait(5)
            probe.leave()
            return x

        slots = Inputs(1, lambda m: f, probe.report, asyncio.get_running_loop())
        for n in range(5):
            slots.add(item(n, n))
        await asyncio.sleep(0.05)
        slots.cancel("in-2")  # waiting for a slot
        slots.cancel("in-4")
        gate.set()
        await settle(slots)
        assert probe.order == [0, 1, 3]
        assert probe.ids() == ["in-0", "in-1", "in-3"]

    run(main)


def test_a_cancelled_running_input_ends_and_the_next_does_not_wait_for_its_thread():
    async def main() -> None:
        probe = Probe()
        spinning = threading.Event()

        def f(kind):
            probe.enter(kind)
            if kind == "spin":  # pure Python: the cancellation lands in it
                spinning.set()
                while True:
                    pass
            if kind == "sleep":  # a C call: the cancellation lands only when it returns
                time.sleep(3)
            return kind

        slots = Inputs(1, lambda m: f, probe.report, asyncio.get_running_loop())
        slots.add(item(1, "spin"))
        slots.add(item(2, "ok"))
        await asyncio.to_thread(spinning.wait, 5)
        slots.cancel("in-1")
        await settle(slots)
        assert probe.ids() == ["in-2"]  # nothing reported for the cancelled input

        started = time.monotonic()
        slots.add(item(3, "sleep"))
        slots.add(item(4, "ok"))
        await asyncio.sleep(0.1)
        slots.cancel("in-3")
        await settle(slots)
        assert time.monotonic() - started < 2  # in-4 ran beside the sleeping thread
        assert probe.ids() == ["in-2", "in-4"]
        await asyncio.sleep(3.2)  # the given-up thread wakes, ends, and reports nothing
        assert probe.ids() == ["in-2", "in-4"] and not slots.pending()
        slots.add(item(5, "ok"))  # and the slots still work after it
        await settle(slots)
        assert probe.ids() == ["in-2", "in-4", "in-5"]

    run(main)


def test_a_cancelled_async_input_frees_its_slot():
    async def main() -> None:
        probe = Probe()

        async def f(x):
            probe.enter(x)
            if x == "hang":
                await asyncio.sleep(30)
            return x

        slots = Inputs(1, lambda m: f, probe.report, asyncio.get_running_loop())
        slots.add(item(1, "hang"))
        slots.add(item(2, "ok"))
        await asyncio.sleep(0.05)
        slots.cancel("in-1")
        slots.add(item(3, "ok"))
        slots.cancel("in-3")  # it waits behind in-2: it is dropped
        await settle(slots)
        assert probe.ids() == ["in-2"] and probe.order == ["hang", "ok"]

    run(main)
