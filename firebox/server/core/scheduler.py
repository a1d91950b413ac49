"""The scheduler: a pool of containers per function variant, a queue of inputs per pool, and the
rules that move inputs into containers, retry them, time them out and scale pools up and down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from ... import wire
from ...backends import gpus
from ...backends.base import Backend, Launch
from ...store import schema as s
from ...store.db import Database
from ...wire import ids
from .functions import FunctionRecord
from .isolation_floor import floor, refusal
from .logs import LogHub
from .metering import Meter
from .outputs import OutputLog
from .queued import ArgsWindow, InputQueue, window_bytes

log = logging.getLogger("firebox.scheduler")

LAUNCH_GATE_TIMEOUT = 10.0  # seconds a launch may hold its turn before the next one starts
STOP_GRACE = 5.0  # seconds a container gets to run its exit hooks before it is killed
LOAD_BATCH = 500  # stored inputs whose arguments are read back from the database at a time


class Link(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


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


class WebExchange(Protocol):
    """The ingress's side of one HTTP request or WebSocket: the events a container sends."""

    started: bool

    def event(self, message: dict[str, Any]) -> None: ...

    def finish(self, status: str, data: bytes | None) -> None: ...


@dataclass(eq=False)
class Container:
    id: str
    pool: Pool
    token: str
    state: str = "starting"  # starting -> ready -> stopping
    link: Link | None = None
    running: dict[str, Input] = field(default_factory=dict)
    idle_since: float = field(default_factory=time.monotonic)
    init_error: bytes | None = None
    served: int = 0
    stop_reason: str | None = None
    gpu: str | None = None  # the GPUs reserved for it, like "H100:2"
    started_at: float | None = None  # when its process existed, for metering
    gpu_indices: tuple[int, ...] = ()  # which of this machine's GPUs those are
    # Set once it dialled in (its runtime imported) or exited: the end of its launch's CPU rush.
    connected: asyncio.Event = field(default_factory=asyncio.Event)


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

    def event(self, text: str) -> None:
        """Remember a scaling decision, for `firebox app stats`."""
        self.events.append((time.time(), text))

    @property
    def running(self) -> int:
        return sum(len(c.running) for c in self.containers.values())

    def live_containers(self) -> list[Container]:
        return [c for c in self.containers.values() if c.state != "stopping"]


@dataclass(frozen=True)
class Reservation:
    gpus: tuple[int, ...] = ()  # indices of the GPUs it holds


class Capacity:
    """The machine's cores, memory and GPUs; containers reserve their requests from it."""

    def __init__(self, cpu: float, memory_mb: int, gpu_list: list[gpus.Gpu] | None = None) -> None:
        self.cpu, self.memory_mb = cpu, memory_mb
        self.used_cpu, self.used_memory = 0.0, 0
        self.gpus = list(gpu_list or [])
        self.used_gpus: set[int] = set()

    @classmethod
    def of_this_machine(cls) -> Capacity:
        cpu = float(os.environ.get("FIREBOX_CPU") or os.cpu_count() or 1)
        memory = int(os.environ.get("FIREBOX_MEMORY_MB") or _total_memory_mb())
        return cls(cpu, memory, gpus.inventory())

    def never_fits(self, cpu: float, memory_mb: int, gpu: Any = None) -> str | None:
        if cpu > self.cpu:
            return f"cpu={cpu} is more than this machine's {self.cpu:g} cores"
        if memory_mb > self.memory_mb:
            return f"memory={memory_mb} MiB is more than this machine's {self.memory_mb} MiB"
        try:
            gpus.options(gpu)
        except (KeyError, TypeError, ValueError):
            return f"gpu={gpu!r} is not a list of {{type, count}} choices"
        if gpu and gpus.pick(self.gpus, gpu) is None:
            return f"gpu={gpus.describe(gpu)} asks for more than this machine has " \
                f"({gpus.summary(self.gpus)})"
        return None

    def reserve(self, cpu: float, memory_mb: int, gpu: Any = None) -> Reservation | None:
        if self.used_cpu + cpu > self.cpu + 1e-9 or self.used_memory + memory_mb > self.memory_mb:
            return None
        indices: tuple[int, ...] = ()
        if gpu:
            free = [g for g in self.gpus if g.index not in self.used_gpus]
            picked = gpus.pick(free, gpu)
            if picked is None:
                return None
            indices = picked
        self.used_cpu += cpu
        self.used_memory += memory_mb
        self.used_gpus.update(indices)
        return Reservation(indices)

    def release(self, cpu: float, memory_mb: int, gpu_indices: tuple[int, ...] = ()) -> None:
        self.used_cpu = max(0.0, self.used_cpu - cpu)
        self.used_memory = max(0, self.used_memory - memory_mb)
        self.used_gpus.difference_update(gpu_indices)

    def gpu_label(self, indices: tuple[int, ...]) -> str | None:
        """'H100:2' for the metering of a container holding these GPUs."""
        if not indices:
            return None
        kind = next(g.type for g in self.gpus if g.index == indices[0])
        return f"{kind}:{len(indices)}" if len(indices) > 1 else kind


def _total_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


class Scheduler:
    def __init__(
        self,
        db: Database,
        backend: Backend,
        outputs: OutputLog,
        logs: LogHub,
        capacity: Capacity,
        container_env: Callable[[Container], dict[str, str]],
        meter: Meter,
    ) -> None:
        self.meter = meter
        self.db = db
        self.backend = backend
        self.outputs = outputs
        outputs.on_caught_up = self._dispatch_queued
        self.logs = logs
        self.capacity = capacity
        self.container_env = container_env
        self.pools: dict[tuple[str, str], Pool] = {}
        self.window = ArgsWindow(window_bytes())
        self.containers: dict[str, Container] = {}
        self.by_call: dict[str, set[Input]] = {}
        self.functions: dict[str, FunctionRecord] = {}
        self.stopped_apps: set[str] = set()
        self.workspace_isolation: dict[str, str] = {}  # workspaces with a default of their own
        self._tick: asyncio.Task[None] | None = None
        # Launches that have not dialled in yet, at most one per core: a cold launch is a few
        # hundred ms of CPU importing Python and the runtime, and a burst that starts them all
        # at once has every one of them ready only at the end. One per core at a time, the
        # first are serving inputs while the rest start.
        self._launching = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._tick = asyncio.create_task(self._tick_loop(), name="scheduler-tick")

    async def shutdown(self) -> None:
        if self._tick:
            self._tick.cancel()
        for c in list(self.containers.values()):
            self._stop_container(c, "the server is shutting down", grace=2.0)
        deadline = time.monotonic() + 4.0
        while self.containers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.containers.values()):
            await self.backend.kill(c.id)

    async def recover(self, load_function: Callable[[str], Any]) -> int:
        """Queue again every accepted input without an output, after a restart. Their arguments
        stay in the database, read back as the inputs come up (a pool's parameters once)."""
        rows = await self.db.read(
            sa.select(
                s.inputs.c.id,
                s.inputs.c.call_id,
                s.inputs.c.idx,
                sa.func.length(s.inputs.c.args).label("size"),
                s.inputs.c.attempts,
                s.calls.c.function_id,
                s.calls.c.method,
                s.calls.c.pool_key,
            )
            .join(s.calls, s.calls.c.id == s.inputs.c.call_id)
            .where(s.inputs.c.state == wire.PENDING)
            .order_by(s.inputs.c.created_at, s.inputs.c.idx)
        )
        touched: set[tuple[str, str]] = set()
        for r in rows:
            fn = await load_function(r.function_id)
            await self.outputs.open(r.call_id)
            if fn is None:
                continue
            pool = self.pools.get((fn.id, r.pool_key))
            if pool is None:
                params = await self.db.read(
                    sa.select(s.calls.c.params).where(s.calls.c.id == r.call_id))
                pool = self.pool(fn, r.pool_key, params[0][0])
            inp = Input(r.id, r.call_id, r.idx, None, r.attempts, pool, r.method, size=r.size)
            self.by_call.setdefault(r.call_id, set()).add(inp)
            if fn.app_id in self.stopped_apps:
                self._finish(inp, wire.FAILURE, _app_stopped_error())
                continue
            pool.queue.append(inp, storable=True)
            touched.add(pool.key)
        for key in touched:
            self.dispatch(self.pools[key])
        return len(rows)

    # ---- pools and inputs ------------------------------------------------------------------

    def pool(self, fn: FunctionRecord, pool_key: str, params: bytes | None) -> Pool:
        key = (fn.id, pool_key)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(key, fn, params, InputQueue(self.window))
        return pool

    def ensure_warm(self, fn: FunctionRecord) -> None:
        """Start min_containers for a function's default pool before any input arrives."""
        if int(fn.get("min_containers")) > 0 and fn.app_id not in self.stopped_apps:
            self.dispatch(self.pool(fn, "", None))

    def submit(self, pool: Pool, inputs: list[Input]) -> None:
        for inp in inputs:
            self.by_call.setdefault(inp.call_id, set()).add(inp)
            pool.queue.append(inp, self._storable(inp))
        self.dispatch(pool)

    def _storable(self, inp: Input) -> bool:
        """Whether the input's arguments can be read back from the database: its rows were
        committed before it was queued. A fast call's are written with its output, perhaps
        after a retry needs them, and a web request's never are: those keep their arguments."""
        if inp.web is not None:
            return False
        log = self.outputs.calls.get(inp.call_id)
        return log is None or not log.fast

    def dispatch(self, pool: Pool) -> None:
        """Hand queued inputs to ready containers with room, then scale the pool."""
        if pool.queue and pool.function.app_id in self.stopped_apps:
            for inp in pool.queue.clear():
                self._finish(inp, wire.FAILURE, _app_stopped_error())
        if pool.queue.ready and self.outputs.has_room():
            ready = [c for c in pool.containers.values() if c.state == "ready" and c.link]
            # Spread work: fill the emptiest containers first.
            ready.sort(key=lambda c: len(c.running))
            for c in ready:
                room = pool.function.per_container - len(c.running)
                if c.pool.function.get("single_use_containers"):
                    room = min(room, 1 - c.served - len(c.running))
                if room <= 0 or not pool.queue.ready:
                    continue
                batch = [pool.queue.popleft() for _ in range(min(room, len(pool.queue.ready)))]
                self._assign(c, batch)
        if pool.queue.stored and pool.loading is None and (
                not pool.queue.ready or self.window.fits(pool.queue.stored[0].size)):
            pool.loading = asyncio.create_task(self._load(pool), name="load-inputs")
        self.scale(pool)

    async def _load(self, pool: Pool) -> None:
        """Read the arguments of the pool's first stored inputs back into memory, a batch at a
        time while the window has room, and hand them out. The inputs being read are in no
        queue meanwhile: one cancelled or finished then is let go once read."""
        try:
            while taken := pool.queue.take_stored(LOAD_BATCH):
                try:
                    rows = await self.db.read(
                        sa.select(s.inputs.c.id, s.inputs.c.args)
                        .where(s.inputs.c.id.in_([inp.id for inp in taken])))
                except Exception:
                    pool.queue.put_back(taken)
                    log.exception("could not read queued inputs' arguments; trying again")
                    await asyncio.sleep(1.0)
                    continue
                found = dict(rows)
                for inp in taken:
                    args = found.get(inp.id)
                    live = inp in self.by_call.get(inp.call_id, ())
                    if args is None or not live:  # cancelled or finished while it was read
                        pool.queue.forget(inp)
                        if live:
                            self._finish(inp, wire.FAILURE, _arguments_gone_error())
                        continue
                    inp.args = args
                    pool.queue.loaded(inp)
                self.dispatch(pool)
        finally:
            pool.loading = None

    def _dispatch_queued(self) -> None:
        """Outputs caught up with their commits: hand out the inputs that waited for it."""
        for pool in list(self.pools.values()):
            if pool.queue:
                self.dispatch(pool)

    def _assign(self, c: Container, batch: list[Input]) -> None:
        loop = asyncio.get_running_loop()
        timeout = float(c.pool.function.get("timeout"))
        items = []
        for inp in batch:
            inp.container = c
            inp.ran_on = c.id
            c.running[inp.id] = inp
            inp.timer = loop.call_later(timeout, self._on_timeout, inp)
            items.append(
                {
                    "id": inp.id,
                    "call_id": inp.call_id,
                    "idx": inp.idx,
                    "method": inp.method,
                    "args": inp.args,
                    "attempt": inp.attempts,
                }
            )
            if self._storable(inp):  # run again, it is read back; running, it holds nothing
                inp.args = None
        assert c.link is not None
        c.link.send({"t": "inputs", "items": items})

    def scale(self, pool: Pool) -> None:
        if pool.function.app_id in self.stopped_apps:
            return
        live = pool.live_containers()
        demand = len(pool.queue) + pool.running
        want = pool.function.wanted_containers(demand)
        for _ in range(want - len(live)):
            if not self._start_container(pool):
                break

    def _start_container(self, pool: Pool) -> bool:
        fn = pool.function
        cpu, memory = float(fn.get("cpu")), int(fn.get("memory"))
        reservation = self.capacity.reserve(cpu, memory, fn.get("gpu"))
        if reservation is None:
            if not pool.waiting_for_capacity:
                pool.waiting_for_capacity = True
                pool.event(
                    f"waiting for capacity: needs {cpu:g} cores and {memory} MiB, "
                    f"{self.capacity.cpu - self.capacity.used_cpu:g} cores and "
                    f"{self.capacity.memory_mb - self.capacity.used_memory} MiB free"
                )
            self._evict_idle(pool, cpu, memory)
            return False  # inputs wait in the queue until a container stops
        pool.waiting_for_capacity = False
        container_id, token = ids.new_container()
        c = Container(container_id, pool, token=token)
        c.gpu_indices = reservation.gpus
        c.gpu = self.capacity.gpu_label(reservation.gpus)
        pool.containers[c.id] = c
        self.containers[c.id] = c
        self.logs.register(c.id, fn.app_id, fn.name)
        pool.event(f"started {c.id} (queued {len(pool.queue)}, running {pool.running})")
        launch = Launch(
            container_id=c.id,
            env=self.container_env(c),
            cpu=cpu,
            memory_mb=memory,
            label=fn.name,
            cpu_limit=fn.get("cpu_limit"),
            memory_limit_mb=fn.get("memory_limit"),
            isolation=fn.get("isolation") or self.workspace_isolation.get(fn.workspace_id),
            block_network=bool(fn.get("block_network")),
            gpus=reservation.gpus,
        )
        startup = float(fn.get("startup_timeout") or max(fn.get("timeout"), 60.0))
        asyncio.create_task(self._launch(c, launch, startup))
        return True

    async def _launch(self, c: Container, launch: Launch, startup: float) -> None:
        if self.backend.takes_standby(launch):  # dials in within milliseconds: no turn needed
            await self._launch_now(c, launch, startup)
            return
        async with self._launching:
            await self._launch_now(c, launch, startup)
            with contextlib.suppress(TimeoutError):  # a hung launch must not hold the others
                await asyncio.wait_for(c.connected.wait(), LAUNCH_GATE_TIMEOUT)

    async def _launch_now(self, c: Container, launch: Launch, startup: float) -> None:
        if c.id not in self.containers:
            return
        if c.state == "stopping":  # stopped while it waited for its turn: never launched
            self.on_container_exit(c.id, None, "stopped before it started")
            return
        asyncio.get_running_loop().call_later(startup, self._check_started, c, startup)
        try:
            self._check_isolation(c.pool.function)
            await self.backend.start(launch)
            # Metered from the moment its process exists (or a standby took it on).
            fn = c.pool.function
            c.started_at = time.time()
            self.meter.container_started(c.id, fn.app_id, fn.id, launch.cpu, launch.memory_mb,
                                         c.gpu, c.started_at)
        except Exception as exc:
            log.exception("could not start container %s", c.id)
            c.init_error = wire.error_record(
                "firebox.exception.RemoteError", f"The container could not be started: {exc}"
            )
            self.on_container_exit(c.id, None, f"could not be started ({exc})")

    def _check_isolation(self, fn: FunctionRecord) -> None:
        """Refuse isolation below the operator's floor unless an operator chose it: the floor
        may have been raised since the function was registered."""
        if fn.get("isolation_by_operator"):
            return
        floor_mode = floor(self.backend.isolation, self.workspace_isolation.get(fn.workspace_id))
        problem = refusal(fn.get("isolation"), floor_mode, f"Function '{fn.name}'")
        if problem:
            raise PermissionError(problem + "; deploy it again without isolation=")

    def _evict_idle(self, pool: Pool, cpu: float, memory: int) -> None:
        """Stop idle containers of other pools to make room; their exits re-dispatch."""
        freeing_cpu = sum(
            float(c.pool.function.get("cpu")) for c in self.containers.values()
            if c.state == "stopping"
        )
        idle = [
            c for c in self.containers.values()
            if c.pool is not pool and c.state == "ready" and not c.running
            and len(c.pool.live_containers()) > int(c.pool.function.get("min_containers"))
        ]
        idle.sort(key=lambda c: c.idle_since)
        for c in idle:
            if self.capacity.cpu - self.capacity.used_cpu + freeing_cpu >= cpu:
                break
            freeing_cpu += float(c.pool.function.get("cpu"))
            self._stop_container(c, "stopped while idle to make room for another function")

    def _check_started(self, c: Container, startup: float) -> None:
        if c.state == "starting" and c.id in self.containers:
            c.init_error = wire.error_record(
                "firebox.exception.FunctionTimeoutError",
                f"The container did not become ready within its startup timeout of {startup:g} s; "
                "make @enter hooks faster or raise startup_timeout.",
            )
            self._kill(c, "did not start in time")

    # ---- container events ------------------------------------------------------------------

    def authenticate(self, container_id: str, token: str) -> Container | None:
        c = self.containers.get(container_id)
        if c is None or not secrets.compare_digest(c.token, token):
            return None
        return c

    def attach(self, c: Container, link: Link) -> dict[str, Any]:
        """A container connected: what it must load."""
        c.link = link
        c.connected.set()
        fn = c.pool.function
        return {
            "t": "hello",
            "container_id": c.id,
            "app_id": fn.app_id,
            "function_id": fn.id,
            "function": fn.spec,
            "params": c.pool.params,
        }

    def on_ready(self, c: Container) -> None:
        if c.state != "starting":
            return
        c.state = "ready"
        c.idle_since = time.monotonic()
        self.meter.container_ready(c.id, time.time())
        self.dispatch(c.pool)

    def on_init_failed(self, c: Container, error: bytes) -> None:
        c.init_error = error

    def on_http(self, c: Container, message: dict[str, Any]) -> None:
        """Response events of an HTTP request a container is serving; "end" finishes it."""
        inp = c.running.get(message["id"])
        if inp is None or inp.web is None:
            return  # cancelled (the client went away) or failed meanwhile
        inp.web.event(message)
        if message.get("end"):
            self.on_outputs(c, [{"id": inp.id, "status": wire.SUCCESS, "data": None,
                                 "exec": message.get("exec")}])

    def socket_in(self, inp: Input, event: dict[str, Any]) -> None:
        """Pass a WebSocket client's message on to the container serving the socket."""
        c = inp.container
        if c is not None and c.link is not None:
            c.link.send({"t": "ws_in", "id": inp.id, "event": event})

    def on_outputs(self, c: Container, items: list[dict[str, Any]]) -> None:
        for item in items:
            inp = c.running.get(item["id"])
            if inp is None:
                continue  # cancelled or timed out meanwhile
            status = item["status"]
            if status == wire.ITEM:
                self.outputs.emit(inp.call_id, inp.idx, inp.id, wire.ITEM, item["data"])
                continue
            inp.exec_seconds = item.get("exec")
            del c.running[inp.id]
            self._clear_timer(inp)
            inp.container = None
            c.served += 1
            if status == wire.FAILURE:
                self._fail_attempt(inp, wire.FAILURE, item["data"])
            else:
                self._finish(inp, status, item["data"])
        if not c.running:
            c.idle_since = time.monotonic()
        if c.pool.function.get("single_use_containers") and c.served and not c.running:
            self._stop_container(c, "single-use container served its input")
        self.dispatch(c.pool)

    def on_container_exit(self, container_id: str, returncode: int | None, cause: str,
                          ended: float | None = None) -> None:
        c = self.containers.pop(container_id, None)
        if c is None:
            return
        c.connected.set()
        pool = c.pool
        pool.containers.pop(c.id, None)
        fn = pool.function
        self.capacity.release(float(fn.get("cpu")), int(fn.get("memory")), c.gpu_indices)
        expected = c.stop_reason is not None
        text = c.stop_reason if expected else cause
        if c.started_at is not None:
            self.meter.container_stopped(c.id, ended or time.time(), text)
        pool.event(f"stopped {c.id}: {text}")
        if not expected:
            self.logs.system(fn.app_id, fn.name, c.id, f"container {c.id} {cause}")
        self.logs.forget(c.id)
        if expected:  # inputs of a container we stopped are not at fault: run them again
            self._requeue_running(c)
        running = list(c.running.values())
        c.running.clear()
        for inp in running:
            self._clear_timer(inp)
            inp.container = None
            if inp.web is not None:  # web requests cannot be retried: say what to do instead
                when = "while it was responding" if inp.web.started else "before it answered"
                text = (f"The container serving this request {cause} {when}; see `firebox app "
                        "logs` for its output, and send the request again.")
            else:
                text = (f"The container running this input {cause}; see `firebox app logs` for "
                        "its output, and add retries= to retry such inputs.")
            error = wire.error_record("firebox.exception.RemoteError", text)
            self._fail_attempt(inp, wire.FAILURE, error)
        if c.state == "starting" and not expected:
            tail = self.logs.tail(c.id)
            error = c.init_error or wire.error_record(
                "firebox.exception.RemoteError",
                f"The container {cause} before it was ready"
                + (f"; its last output:\n{tail}" if tail else "")
                + "\n(all of it: `firebox app logs`)",
            )
            for inp in pool.queue.clear():
                self._fail_attempt(inp, wire.FAILURE, error)
        self.dispatch(pool)
        for other in list(self.pools.values()):  # capacity was freed: waiting pools may start
            if other is not pool and other.queue:
                self.dispatch(other)

    # ---- outcomes --------------------------------------------------------------------------

    def _fail_attempt(self, inp: Input, status: str, data: bytes) -> None:
        delay = inp.pool.function.retry_delay(inp.attempts)
        started = inp.web is not None and inp.web.started  # what went out cannot be redone
        if delay is None or started or inp.pool.function.app_id in self.stopped_apps:
            self._finish(inp, status, data)
            return
        inp.attempts += 1
        attempts = inp.attempts
        if not self.outputs.note_attempts(inp.call_id, attempts):
            self.db.write_soon(
                lambda conn: conn.execute(
                    s.inputs.update().where(s.inputs.c.id == inp.id).values(attempts=attempts)
                )
            )
        asyncio.get_running_loop().call_later(delay, self._requeue, inp)

    def _requeue(self, inp: Input) -> None:
        live = self.by_call.get(inp.call_id)
        if live is None or inp not in live:
            return  # cancelled while waiting
        if inp.pool.function.app_id in self.stopped_apps:
            self._finish(inp, wire.FAILURE, _app_stopped_error())
            return
        inp.pool.queue.append(inp, self._storable(inp))
        self.dispatch(inp.pool)

    def _finish(self, inp: Input, status: str, data: bytes | None) -> None:
        live = self.by_call.get(inp.call_id)
        if live is not None:
            live.discard(inp)
            if not live:
                del self.by_call[inp.call_id]
        if inp.web is not None:  # HTTP requests are answered, not stored
            inp.web.finish(status, data)
            return
        self.outputs.emit(inp.call_id, inp.idx, inp.id, status, data,
                          container_id=inp.ran_on, exec_seconds=inp.exec_seconds)

    def _on_timeout(self, inp: Input) -> None:
        c = inp.container
        if c is None or inp.id not in c.running:
            return
        del c.running[inp.id]
        inp.timer = None
        inp.container = None
        timeout = float(inp.pool.function.get("timeout"))
        error = wire.error_record(
            "firebox.exception.FunctionTimeoutError",
            f"The input ran longer than the function's timeout of {timeout:g} s and was stopped; "
            "raise timeout= if it needs longer.",
        )
        self._fail_attempt(inp, wire.TIMEOUT, error)
        self._kill(c, f"was stopped: an input exceeded the {timeout:g} s timeout")

    def _clear_timer(self, inp: Input) -> None:
        if inp.timer is not None:
            inp.timer.cancel()
            inp.timer = None

    # ---- stopping --------------------------------------------------------------------------

    def _kill(self, c: Container, reason: str) -> None:
        """Kill a container now; inputs it held go back to the queue unharmed."""
        self._requeue_running(c)
        c.state = "stopping"
        c.stop_reason = reason
        asyncio.create_task(self.backend.kill(c.id))

    def _requeue_running(self, c: Container) -> None:
        for inp in reversed(list(c.running.values())):
            self._clear_timer(inp)
            inp.container = None
            if inp.web is not None and inp.web.started:
                # Half a response went out: it cannot be sent again from another container.
                self._finish(inp, wire.FAILURE, wire.error_record(
                    "firebox.exception.RemoteError",
                    f"The container serving this request {c.stop_reason or 'stopped'} "
                    "while it was responding."))
                continue
            c.pool.queue.appendleft(inp)
        c.running.clear()

    def _stop_container(self, c: Container, reason: str, grace: float = STOP_GRACE) -> None:
        if c.state == "stopping":
            return
        c.state = "stopping"
        c.stop_reason = reason
        if c.link is not None:
            c.link.send({"t": "stop"})

        def enforce() -> None:
            if c.id in self.containers:
                asyncio.ensure_future(self.backend.kill(c.id))

        asyncio.get_running_loop().call_later(grace, enforce)

    def cancel_call(self, call_id: str) -> int:
        live = list(self.by_call.get(call_id, ()))
        for pool in {inp.pool for inp in live if inp.container is None}:
            pool.queue.remove_call(call_id)
        for inp in live:
            c = inp.container
            if c is not None:
                c.running.pop(inp.id, None)
                self._clear_timer(inp)
                inp.container = None
                if c.link is not None:
                    c.link.send({"t": "cancel", "ids": [inp.id]})
            self._finish(inp, wire.CANCELLED, None)
        return len(live)

    def stop_app(self, app_id: str) -> None:
        self.stopped_apps.add(app_id)
        for pool in [p for p in self.pools.values() if p.function.app_id == app_id]:
            for inp in pool.queue.clear():
                self._finish(inp, wire.FAILURE, _app_stopped_error())
            for c in list(pool.containers.values()):
                self._requeue_running(c)
                for inp in pool.queue.clear():
                    self._finish(inp, wire.FAILURE, _app_stopped_error())
                self._stop_container(c, "the app was stopped")

    def replace_function(self, fn: FunctionRecord) -> None:
        """A new deploy changed a function: new containers use the new spec, old ones drain."""
        self.functions[fn.id] = fn
        for pool in [p for p in self.pools.values() if p.function.id == fn.id]:
            pool.function = fn
            for c in list(pool.containers.values()):
                grace = float(fn.get("timeout")) if c.running else STOP_GRACE
                self._stop_container(c, "a new version was deployed", grace=grace)
            self.dispatch(pool)

    # ---- periodic work ---------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                self._scale_down_idle()
                self.outputs.forget_idle(300.0, set(self.by_call))
            except Exception:
                log.exception("scheduler tick failed")

    def _scale_down_idle(self) -> None:
        now = time.monotonic()
        for pool in list(self.pools.values()):
            fn = pool.function
            window = float(fn.get("scaledown_window"))
            live = pool.live_containers()
            keep = fn.wanted_containers(len(pool.queue) + pool.running)
            idle = [c for c in live if c.state == "ready" and not c.running]
            idle.sort(key=lambda c: c.idle_since)
            surplus = len(live) - keep
            for c in idle:
                if surplus <= 0:
                    break
                if now - c.idle_since >= window:
                    self._stop_container(c, "scaled down after being idle")
                    surplus -= 1
            if (not pool.containers and not pool.queue and pool.loading is None
                    and pool.key in self.pools):
                if fn.app_id in self.stopped_apps or not fn.get("min_containers"):
                    del self.pools[pool.key]

    def stats(self) -> dict[str, Any]:
        return {
            "containers": len(self.containers),
            "queued": sum(len(p.queue) for p in self.pools.values()),
            "running": sum(p.running for p in self.pools.values()),
        }


def _arguments_gone_error() -> bytes:
    return wire.error_record(
        "firebox.exception.RemoteError",
        "The input's arguments were no longer in the server's database when its turn came; "
        "call the function again.",
    )


def _app_stopped_error() -> bytes:
    return wire.error_record(
        "firebox.exception.RemoteError",
        "The app was stopped before this input finished; run or deploy it again.",
    )

