"""Functions for the call-semantics tests: plain, failing, slow, generators, concurrent, batched.

Functions whose effects a test reads from the host's files run with isolation="process"; the
others run in the server's default isolation, with a private /tmp and pid namespace, so they
name their container by FIREBOX_CONTAINER_ID rather than by pid.
"""

import asyncio
import os
import threading
import time
from pathlib import Path

import firebox

app = firebox.App("test-calls")


class CallError(Exception):
    pass


@app.function()
def square(x):
    return x * x


@app.function()
def add(a, b=0, c=0):
    return a + b + c


@app.function()
def fail_on(x, bad=3):
    if x == bad:
        raise CallError(f"bad input {x}")
    return x


@app.function()
def where():
    return {
        "is_local": firebox.is_local(),
        "input_id": firebox.current_input_id(),
        "call_id": firebox.current_function_call_id(),
        "container": os.environ.get("FIREBOX_CONTAINER_ID"),
        "modal_is_remote": os.environ.get("MODAL_IS_REMOTE"),
    }


@app.function()
async def async_where():
    await asyncio.sleep(0)
    return firebox.current_input_id(), firebox.current_function_call_id()


@app.function()
def sleepy(seconds, value=None):
    time.sleep(seconds)
    return seconds if value is None else value


@app.function(max_containers=1, isolation="process")
def block(seconds, marker=None):
    """Sleeps in one container; marker says when it started, so a test can cancel it running."""
    if marker:
        Path(marker).write_text("started")
    time.sleep(seconds)
    return seconds


@app.function(isolation="process")
def touch(path, text="done"):
    Path(path).write_text(text)


@app.function(isolation="process")
def flaky(path, failures):
    """Fails the first `failures` attempts, counting attempts in a file."""
    counter = Path(path)
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts <= failures:
        raise CallError(f"attempt {attempts} fails")
    return attempts


@app.function()
def countdown(n):
    for i in range(n, 0, -1):
        yield i


@app.function()
async def async_countdown(n):
    for i in range(n, 0, -1):
        await asyncio.sleep(0)
        yield i


@app.function()
def gen_fails_after(n):
    yield from range(n)
    raise CallError(f"stopped after {n}")


# Concurrency is proven by a barrier: n inputs can only pass it if all n run at the same time
# in the same container (the barriers are module globals of one process).
_barriers: dict[str, threading.Barrier] = {}
_async_barriers: dict[str, asyncio.Barrier] = {}
_lock = threading.Lock()


def meet(key, n):
    with _lock:
        barrier = _barriers.setdefault(key, threading.Barrier(n, timeout=20))
    barrier.wait()
    return os.environ.get("FIREBOX_CONTAINER_ID"), threading.get_ident()


@app.function(max_containers=1)
@firebox.concurrent(max_inputs=4)
def meet_threads(key, n):
    return meet(key, n)


@app.function(max_containers=1)
@firebox.concurrent(max_inputs=4)
async def meet_tasks(key, n):
    barrier = _async_barriers.setdefault(key, asyncio.Barrier(n))
    async with asyncio.timeout(20):
        await barrier.wait()
    return os.environ.get("FIREBOX_CONTAINER_ID"), threading.get_ident()


@app.function(max_containers=1)
def meet_plain(key, n):
    return meet(key, n)


@app.function()
@firebox.batched(max_batch_size=8, wait_ms=500)
def batch_sizes(xs):
    return [(x, len(xs)) for x in xs]


@app.function()
@firebox.batched(max_batch_size=4, wait_ms=100)
async def async_batch_double(xs):
    return [2 * x for x in xs]


@app.function()
@firebox.batched(max_batch_size=4, wait_ms=100)
def batch_wrong_length(xs):
    return xs[:-1] if len(xs) > 1 else []


# Short inputs are prefetched: a container holds more than it runs. These count how many of a
# container's inputs overlap (module globals of one process) to show it still runs max_inputs.
_overlap = {"now": 0, "most": 0, "ran": 0}


def _enter_overlap() -> None:
    with _lock:
        _overlap["now"] += 1
        _overlap["ran"] += 1
        _overlap["most"] = max(_overlap["most"], _overlap["now"])


def _leave_overlap() -> int:
    with _lock:
        _overlap["now"] -= 1
        return _overlap["most"]


@app.function(max_containers=1)
def overlap(seconds):
    _enter_overlap()
    time.sleep(seconds)
    return _leave_overlap()


@app.function(max_containers=1)
async def overlap_async(seconds):
    _enter_overlap()
    await asyncio.sleep(seconds)
    return _leave_overlap()


@app.function(max_containers=1, isolation="process")
def die_once(i, marker, at):
    """Kills its container the first time it gets input `at` (marker remembers it did)."""
    if i == at and not Path(marker).exists():
        Path(marker).write_text("died")
        time.sleep(0.1)  # the outputs before it have gone out: they ended, it did not
        os._exit(1)
    time.sleep(0.001)
    return i
