"""The scheduler's state: a pool of containers per function variant, each with its queue of
inputs, and the inputs running in each container."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from .capacity import Reservation
from .functions import FunctionRecord
from .queued import InputQueue

if TYPE_CHECKING:
    from .sandboxes import Exec


class Channel(Protocol):
    """The scheduler's side of a container's channel."""

    def send(self, message: dict[str, Any]) -> None: ...


class WebExchange(Protocol):
    """The ingress's side of one HTTP request or WebSocket: the events a container sends."""

    started: bool

    def event(self, message: dict[str, Any]) -> None: ...

    def finish(self, status: str, data: bytes | None) -> None: ...

    def takes(self, c: Container) -> bool:
        """Whether the caller serves the request with container c itself (it went to c)."""
        ...


@dataclass(eq=False, slots=True)  # slots: a queue may hold a million of them
class Input:
    id: str
    call_id: str
    idx: int
    # None while the input's arguments wait in the database (inputs.args): a queued input past
    # the window, or one handed out, whose rows are stored (see queued.py).
    args: bytes | None
    attempts: int
    pool: Pool
    method: str | None
    container: Container | None = None
    timer: asyncio.TimerHandle | None = None
    exec_seconds: float | None = None
    ran_on: str | None = None
    web: WebExchange | None = None  # set for an HTTP request or WebSocket from the ingress
    size: int = -1  # of its arguments, in or out of memory

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.args or b"")

    @property
    def runs_in(self) -> Container | None:
        """The container running it now: None while queued, or prefetched and waiting."""
        c = self.container
        return c if c is not None and self.id not in c.waiting else None


@dataclass(eq=False)
class Container:
    id: str
    pool: Pool
    token: str
    reservation: Reservation  # the cores, memory and GPUs it holds, and on which node
    state: str = "starting"  # starting -> ready -> stopping
    channel: Channel | None = None
    # The inputs it holds, in the order it was given them: those it runs, then (prefetched)
    # those queued in it behind them, also in `waiting`, which are timed only once they start.
    running: dict[str, Input] = field(default_factory=dict)
    waiting: dict[str, Input] = field(default_factory=dict)
    idle_since: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.monotonic)
    init_error: bytes | None = None
    served: int = 0
    stop_reason: str | None = None
    gpu: str | None = None  # the GPUs reserved for it, like "H100:2"
    started_at: float | None = None  # when its process existed, for metering
    # Set once it dialled in (its runtime imported) or exited: the end of its launch's CPU rush.
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    execs: dict[str, Exec] = field(default_factory=dict)  # commands exec'd into it, by id

    def _free_slots(self) -> int:
        return self.pool.function.per_container - (len(self.running) - len(self.waiting))

    def hold(self, inp: Input) -> bool:
        """Give it the input: True when it runs now, False when it waits behind others."""
        runs = self._free_slots() > 0
        inp.container = self
        inp.ran_on = self.id
        self.running[inp.id] = inp
        if not runs:
            self.waiting[inp.id] = inp
        return runs

    def release(self, inp: Input) -> None:
        """The input left it: ended, cancelled, timed out or taken back."""
        self.running.pop(inp.id, None)
        self.waiting.pop(inp.id, None)
        if inp.container is self:
            inp.container = None

    def started(self) -> list[Input]:
        """The waiting inputs that started since: one for each slot that came free, in the
        order it was given them (the container runs them so)."""
        ids = list(self.waiting)[:max(0, self._free_slots())]
        return [self.waiting.pop(i) for i in ids]

    def take_waiting(self) -> list[Input]:
        """The prefetched inputs it has not started, in order, released."""
        waiting = list(self.waiting.values())
        for inp in waiting:
            self.release(inp)
        return waiting

    def take_all(self) -> list[Input]:
        """Everything it holds, in order, released: it stopped or is being killed."""
        held = list(self.running.values())
        for inp in held:
            inp.container = None
        self.running.clear()
        self.waiting.clear()
        return held


@dataclass(eq=False)
class Pool:
    key: tuple[str, str]
    function: FunctionRecord
    params: bytes | None
    queue: InputQueue
    containers: dict[str, Container] = field(default_factory=dict)
    events: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=50))
    waiting_for_capacity: bool = False
    loading: asyncio.Task[None] | None = None  # reading stored inputs' arguments back
    # Picks the container for each input where the pool's function chooses (dispatch.Router).
    router: Any = None
    exec_mean: float | None = None  # seconds an input runs, a moving average of its outputs'
    start_mean: float | None = None  # seconds from a container's start to ready, the same

    def event(self, text: str) -> None:
        """Remember a scaling decision, for `firebox app stats`."""
        self.events.append((time.time(), text))

    def observe(self, exec_seconds: float) -> None:
        """An input ran for exec_seconds: fold it into the pool's average."""
        mean = self.exec_mean
        self.exec_mean = exec_seconds if mean is None else mean + (exec_seconds - mean) / 16

    def ready(self, c: Container) -> None:
        """One of its containers is ready: time its start."""
        c.state = "ready"
        c.idle_since = now = time.monotonic()
        took, mean = now - c.created, self.start_mean
        self.start_mean = took if mean is None else mean + (took - mean) / 4

    @property
    def running(self) -> int:
        return sum(len(c.running) for c in self.containers.values())

    @property
    def prefetched(self) -> int:
        """Of those running, the ones waiting in their containers behind others."""
        return sum(len(c.waiting) for c in self.containers.values())

    def live_containers(self) -> list[Container]:
        return [c for c in self.containers.values() if c.state != "stopping"]

    def retire(self) -> None:
        """A deploy left its function out: the inputs it holds still run, and then it scales
        to zero, keeping no container warm."""
        spec = {**self.function.spec, "min_containers": 0, "buffer_containers": 0}
        self.function = replace(self.function, spec=spec)
        self.event("its function was left out of a deploy: finishing what it holds")
