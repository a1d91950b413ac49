"""A container's inputs, run in arrival order with at most `max_inputs` at once (its slots).

A synchronous function's inputs run in lanes: threads that each take the next admitted input
as theirs ends, with no hop through the event loop between inputs, so a container holding
prefetched inputs runs them back to back. Coroutine functions and async generators run as
tasks on the event loop. Both kinds share the slots, so a class with sync and async methods
still runs at most `max_inputs` of its inputs at once.

Cancelling an input that waits drops it. Cancelling one that runs raises InputCancellation in
it: in its task, or in its lane's thread (where the exception lands when that thread next runs
Python, not during a sleep or a long C call). That lane is given up at once and a new one
takes its place, so the inputs behind it do not wait for it."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import inspect
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..exception import InputCancellation
from ..wire import user_code

Item = dict[str, Any]
Report = Callable[[str, str, "bytes | None", "float | None"], None]


@dataclass(frozen=True)
class Callee:
    """What a method's inputs call, and how: inspected once per method, not once per input."""

    f: Any
    is_async: bool  # a coroutine function or an async generator: a task on the event loop
    is_gen: bool  # a generator (sync or async): its items are sent as they come

    @classmethod
    def of(cls, f: Any) -> Callee:
        is_async_gen = inspect.isasyncgenfunction(f)
        return cls(f, is_async_gen or inspect.iscoroutinefunction(f),
                   is_async_gen or inspect.isgeneratorfunction(f))


class Inputs:
    def __init__(self, max_inputs: int, callable_for: Callable[[str | None], Any],
                 report: Report, loop: asyncio.AbstractEventLoop) -> None:
        self.max_inputs = max_inputs
        self.callable_for = callable_for
        self.report = report  # thread-safe: lanes report from their threads
        self.loop = loop
        self.callees: dict[str | None, Callee] = {}  # by method
        self.lock = threading.Lock()  # guards everything below
        self.waiting: deque[tuple[Item, Callee]] = deque()
        self.busy = 0  # inputs admitted to a slot and not yet ended
        self.admitted: queue.SimpleQueue[tuple[Item, Callee] | None] = queue.SimpleQueue()
        self.queued: set[str] = set()  # ids admitted to the lanes, not yet taken by one
        self.in_lanes = 0  # of the busy inputs, those admitted to the lanes
        self.lanes = 0  # lane threads alive and not given up
        self.running: dict[str, int] = {}  # input id -> the lane thread running it
        self.given_up: set[int] = set()  # lane threads whose input was cancelled
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.context = contextvars.copy_context()

    def pending(self) -> int:
        """Inputs held here that have not ended: more outputs are coming."""
        return self.busy + len(self.waiting)

    def add(self, item: Item) -> None:
        """Take an input (on the event loop): it runs when a slot is free and those before it
        have started."""
        method = item.get("method")
        callee = self.callees.get(method)
        if callee is None:
            try:
                callee = self.callees[method] = Callee.of(self.callable_for(method))
            except Exception as exc:
                self.report(item["id"], wire.FAILURE, wire.encode_exception(exc), None)
                return
        with self.lock:
            self.waiting.append((item, callee))
            started = self._admit()
        self._start_tasks(started)

    def _admit(self) -> list[tuple[Item, Callee]]:
        """Give free slots to waiting inputs, in order (holding the lock): sync ones go to the
        lanes here, async ones are returned for the event loop to start."""
        started: list[tuple[Item, Callee]] = []
        while self.waiting and self.busy < self.max_inputs:
            item, callee = self.waiting.popleft()
            self.busy += 1
            if callee.is_async:
                started.append((item, callee))
                continue
            self.in_lanes += 1
            self.queued.add(item["id"])
            self.admitted.put((item, callee))
        while self.lanes < self.in_lanes:  # a lane for each sync input admitted
            self.lanes += 1
            threading.Thread(target=self.context.copy().run, args=(self._lane,),
                             name=f"input-{self.lanes}", daemon=True).start()
        return started

    def _start_tasks(self, started: list[tuple[Item, Callee]]) -> None:
        for item, callee in started:
            task = self.loop.create_task(self._run_async(item, callee))
            self.tasks[item["id"]] = task
            task.add_done_callback(lambda _t, i=item["id"]: self._task_ended(i))

    def _task_ended(self, input_id: str) -> None:
        self.tasks.pop(input_id, None)
        with self.lock:
            self._ended(in_lane=False)

    def _ended(self, in_lane: bool) -> None:
        """A slot came free (lock held by the caller): admit the next inputs."""
        self.busy -= 1
        self.in_lanes -= in_lane
        started = self._admit()
        if started:
            self.loop.call_soon_threadsafe(self._start_tasks, started)

    def cancel(self, input_id: str) -> None:
        """Cancel an input here (on the event loop), wherever it is."""
        with self.lock:
            for entry in self.waiting:
                if entry[0]["id"] == input_id:
                    self.waiting.remove(entry)
                    return
            thread = self.running.pop(input_id, None)
            if thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread), ctypes.py_object(InputCancellation))
                self.given_up.add(thread)
                self.lanes -= 1
                self._ended(in_lane=True)  # a new lane takes the inputs behind it
                return
            self.queued.discard(input_id)  # its lane will skip it
        task = self.tasks.get(input_id)
        if task is not None:
            task.cancel()

    async def drained(self, timeout: float) -> None:
        """Wait (up to `timeout`) for every input held here to end."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # ---- running ---------------------------------------------------------------------------

    def _lane(self) -> None:
        me = threading.get_ident()
        try:
            while self._run_next(me):
                pass
        except InputCancellation:
            return  # it landed between inputs: this lane was given up already

    def _run_next(self, me: int) -> bool:
        """Run the next admitted input in this lane; False once the lane is to end."""
        entry = self.admitted.get()
        if entry is None:
            return False
        item, callee = entry
        input_id = item["id"]
        with self.lock:
            if input_id not in self.queued:  # cancelled before it started
                self._ended(in_lane=True)
                return True
            self.queued.discard(input_id)
            self.running[input_id] = me
        try:
            outcome = self._run_sync(item, callee)
        except InputCancellation:
            outcome = None
        while True:  # a cancellation sent as it ended lands here, or is cleared here
            try:
                with self.lock:
                    if self.running.pop(input_id, None) is None:  # a cancellation was sent
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(me), None)
                    given_up = me in self.given_up
                    self.given_up.discard(me)
                    if not given_up:
                        self._ended(in_lane=True)
                break
            except InputCancellation:
                outcome = None
        if given_up:
            return False  # cancelled: a new lane took this one's place
        if outcome is not None and callee.is_gen:  # after its items
            self.loop.call_soon_threadsafe(self.report, input_id, *outcome)
        elif outcome is not None:
            self.report(input_id, *outcome)
        return True

    def _run_sync(self, item: Item, callee: Callee) -> tuple[str, bytes, float] | None:
        """Run one input in this lane; its output, or None where it was cancelled."""
        input_id, started = item["id"], _begin(item)
        try:
            args, kwargs = wire.deserialize(item["args"], "arguments")
            if callee.is_gen:
                for number, value in enumerate(callee.f(*args, **kwargs)):
                    data = wire.item(number, value)
                    self.loop.call_soon_threadsafe(self.report, input_id, wire.ITEM, data, None)
                result = None
            else:
                result = callee.f(*args, **kwargs)
            return wire.SUCCESS, wire.serialize(result, "return value"), \
                time.perf_counter() - started
        except InputCancellation:
            return None
        except Exception as exc:
            return wire.FAILURE, wire.encode_exception(exc), time.perf_counter() - started

    async def _run_async(self, item: Item, callee: Callee) -> None:
        input_id, started = item["id"], _begin(item)
        try:
            args, kwargs = wire.deserialize(item["args"], "arguments")
            if callee.is_gen:
                number = 0
                async for value in callee.f(*args, **kwargs):
                    self.report(input_id, wire.ITEM, wire.item(number, value), None)
                    number += 1
                result: Any = None
            else:
                result = await callee.f(*args, **kwargs)
            self.report(input_id, wire.SUCCESS, wire.serialize(result, "return value"),
                        time.perf_counter() - started)
        except (asyncio.CancelledError, InputCancellation):
            return  # the control plane already settled this input
        except Exception as exc:
            self.report(input_id, wire.FAILURE, wire.encode_exception(exc),
                        time.perf_counter() - started)


def _begin(item: Item) -> float:
    """Make the input current (for the calls it makes) and note when it started."""
    user_code.current_input.set(item["id"])
    user_code.current_call.set(item["call_id"])
    return time.perf_counter()
