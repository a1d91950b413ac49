"""The scheduler: moves each pool's queued inputs into its containers and their outcomes out
(retrying, timing out, failing what a lost container held), starts and stops containers as the
autoscaler decides, and stops or replaces an app's pools."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from ... import wire
from ...backends.base import Backend, Launch
from ...store.db import Database
from ...wire import ids, messages
from . import autoscaler, dispatch, failures, input_rows
from .capacity import Capacity
from .functions import FunctionRecord
from .launches import LaunchGate, isolation_problem, launch_for, startup_timeout
from .logs import LogHub
from .metering import Meter
from .outputs import OutputLog
from .pools import Channel, Container, Input, Pool
from .queued import ArgsWindow, InputQueue, window_bytes
from .timers import Timers

log = logging.getLogger("firebox.scheduler")

STOP_GRACE = 5.0  # seconds a container gets to run its exit hooks before it is killed
FORGET_IDLE = 300.0  # seconds a finished call's outputs stay in memory, unread


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
        self.timers = Timers(self._tick, self._on_timeout)
        self.gate = LaunchGate(backend, os.cpu_count() or 1)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.timers.start()

    async def shutdown(self) -> None:
        self.timers.stop()
        for c in list(self.containers.values()):
            self._stop_container(c, "the server is shutting down", grace=2.0)
        deadline = time.monotonic() + 4.0
        while self.containers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.containers.values()):
            await self.backend.kill(c.id)

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

    def pools_of(self, app_id: str) -> list[Pool]:
        return [p for p in self.pools.values() if p.function.app_id == app_id]

    def containers_of(self, app_id: str) -> list[Container]:
        return [c for c in self.containers.values() if c.pool.function.app_id == app_id]

    def autoscaler_changed(self, fn: FunctionRecord, note: str) -> None:
        """A function's autoscaler settings changed in place: its pools scale to them now."""
        self.ensure_warm(fn)
        for pool in [p for p in self.pools.values() if p.function.id == fn.id]:
            pool.event(note)
            self.dispatch(pool)

    def set_workspace_isolation(self, workspace_id: str, mode: str | None) -> None:
        """A workspace's default isolation for its new containers; None: the server's."""
        if mode is None:
            self.workspace_isolation.pop(workspace_id, None)
        else:
            self.workspace_isolation[workspace_id] = mode

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
                self.finish(inp, wire.FAILURE, failures.app_stopped())
        if pool.queue.ready and self.outputs.has_room():
            dispatch.hand_out(pool, self._assign)
        if pool.queue.stored and pool.loading is None and (
                not pool.queue.ready or self.window.fits(pool.queue.stored[0].size)):
            pool.loading = asyncio.create_task(
                input_rows.read_back(self.db, pool, self._live, self._arguments_gone,
                                     self.dispatch), name="load-inputs")
        self.scale(pool)

    def _dispatch_queued(self) -> None:
        """Outputs caught up with their commits: hand out the inputs that waited for it."""
        for pool in list(self.pools.values()):
            if pool.queue:
                self.dispatch(pool)

    def _assign(self, c: Container, batch: list[Input]) -> None:
        timeout = float(c.pool.function.get("timeout"))
        items: list[messages.InputItem] = []
        for inp in batch:
            if c.hold(inp):  # else prefetched: timed once it starts (_time_started)
                self.timers.input_started(inp, timeout)
            if inp.web is not None and inp.web.takes(c):
                continue  # the model gateway sends this request to the container's port itself
            items.append({"id": inp.id, "call_id": inp.call_id, "idx": inp.idx,
                          "method": inp.method, "args": inp.args, "attempt": inp.attempts})
            if self._storable(inp):  # run again, it is read back; running, it holds nothing
                inp.args = None
        assert c.channel is not None
        if items:
            c.channel.send(messages.inputs(items))

    # ---- scaling ---------------------------------------------------------------------------

    def _state(self, pool: Pool) -> autoscaler.PoolState:
        return autoscaler.PoolState(autoscaler.Limits.of(pool.function), len(pool.queue),
                                    pool.running, pool.containers.values(), time.monotonic(),
                                    dispatch.timed_backlog(pool), pool.start_mean)

    def scale(self, pool: Pool) -> None:
        """Start the containers the autoscaler wants for the pool, while capacity allows."""
        if pool.function.app_id in self.stopped_apps:
            return
        for _ in range(autoscaler.starts(self._state(pool))):
            if not self._start_container(pool):
                break

    def scale_down(self) -> None:
        """Stop the containers the autoscaler finds idle past their scaledown window; forget
        pools left with nothing."""
        for pool in list(self.pools.values()):
            fn = pool.function
            for cid in autoscaler.stops(self._state(pool)):
                self._stop_container(pool.containers[cid], "scaled down after being idle")
            if (not pool.containers and not pool.queue and pool.loading is None
                    and pool.key in self.pools):
                if fn.app_id in self.stopped_apps or not fn.get("min_containers"):
                    del self.pools[pool.key]

    def _start_container(self, pool: Pool) -> bool:
        fn = pool.function
        cpu, memory = float(fn.get("cpu")), int(fn.get("memory"))
        reservation = self.capacity.reserve(cpu, memory, fn.get("gpu"))
        if reservation is None:
            absent = self.capacity.lacks_gpu(fn.get("gpu"))
            if absent is not None:  # no container stopping can help: say so where users look
                if not pool.waiting_for_capacity:
                    pool.waiting_for_capacity = True
                    text = f"waiting: {absent}; its inputs wait until a node with it joins"
                    pool.event(text)
                    self.logs.system(fn.app_id, fn.name, "", text)
                return False
            if not pool.waiting_for_capacity:
                pool.waiting_for_capacity = True
                pool.event(
                    f"waiting for capacity: needs {cpu:g} cores and {memory} MiB, "
                    f"{self.capacity.cpu - self.capacity.used_cpu:g} cores and "
                    f"{self.capacity.memory_mb - self.capacity.used_memory} MiB free"
                )
            self._evict_idle(pool, cpu)
            return False  # inputs wait in the queue until a container stops
        pool.waiting_for_capacity = False
        container_id, secret = ids.new_container()
        c = Container(container_id, pool, secret, reservation,
                      gpu=self.capacity.gpu_label(reservation))
        pool.containers[c.id] = c
        self.containers[c.id] = c
        self.logs.register(c.id, fn.app_id, fn.name)
        pool.event(f"started {c.id} (queued {len(pool.queue)}, running {pool.running})")
        launch = launch_for(c, self.container_env(c),
                            self.workspace_isolation.get(fn.workspace_id))
        asyncio.create_task(self.gate.run(c, launch, lambda: self._launch(c, launch)))
        return True

    async def _launch(self, c: Container, launch: Launch) -> None:
        if c.id not in self.containers:
            return
        if c.state == "stopping":  # stopped while it waited for its turn: never launched
            self.on_container_exit(c.id, None, "stopped before it started")
            return
        fn = c.pool.function
        startup = startup_timeout(fn)
        self.timers.later(startup, self._check_started, c, startup)
        try:
            problem = isolation_problem(fn, self.backend.isolation,
                                        self.workspace_isolation.get(fn.workspace_id))
            if problem:
                raise PermissionError(problem)
            await self.backend.start(launch)
            # Metered from the moment its process exists (or a standby took it on).
            c.started_at = time.time()
            self.meter.container_started(c.id, fn.app_id, fn.id, launch.cpu, launch.memory_mb,
                                         c.gpu, c.started_at)
        except Exception as exc:
            log.exception("could not start container %s", c.id)
            c.init_error = failures.not_started(exc)
            self.on_container_exit(c.id, None, f"could not be started ({exc})")

    def _evict_idle(self, pool: Pool, cpu: float) -> None:
        """Stop idle containers of other pools to make room; their exits re-dispatch."""
        freeing = sum(float(c.pool.function.get("cpu")) for c in self.containers.values()
                      if c.state == "stopping")
        idle = [
            autoscaler.Idle(c.id, float(c.pool.function.get("cpu")), c.idle_since)
            for c in self.containers.values()
            if c.pool is not pool and c.state == "ready" and not c.running
            and len(c.pool.live_containers()) > int(c.pool.function.get("min_containers"))
        ]
        free = self.capacity.cpu - self.capacity.used_cpu + freeing
        for cid in autoscaler.evictions(idle, free, cpu):
            self._stop_container(self.containers[cid],
                                 "stopped while idle to make room for another function")

    def _check_started(self, c: Container, startup: float) -> None:
        if c.state == "starting" and c.id in self.containers:
            c.init_error = failures.startup_timed_out(startup)
            self._kill(c, "did not start in time")

    # ---- container events ------------------------------------------------------------------

    def authenticate(self, container_id: str, token: str) -> Container | None:
        c = self.containers.get(container_id)
        if c is None or not secrets.compare_digest(c.token, token):
            return None
        return c

    def attach(self, c: Container, channel: Channel) -> messages.Hello:
        """A container connected: what it must load."""
        c.channel = channel
        c.connected.set()
        fn = c.pool.function
        return messages.hello(c.id, fn.app_id, fn.id, fn.spec, c.pool.params)

    def on_ready(self, c: Container, started: object = "cold") -> None:
        if c.state != "starting":
            return
        c.pool.ready(c)
        self.meter.container_ready(c.id, time.time(), messages.start_kind(started))
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
        if c is not None and c.channel is not None:
            c.channel.send(messages.ws_in(inp.id, event))

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
            c.release(inp)
            self.timers.input_done(inp)
            c.served += 1
            if inp.exec_seconds is not None:
                c.pool.observe(inp.exec_seconds)
            if status == wire.FAILURE:
                self._fail_attempt(inp, wire.FAILURE, item["data"])
            else:
                self.finish(inp, status, item["data"])
        self._time_started(c)
        if not c.running:
            c.idle_since = time.monotonic()
        if c.pool.function.get("single_use_containers") and c.served and not c.running:
            self._stop_container(c, "single-use container served its input")
        self.dispatch(c.pool)

    def _time_started(self, c: Container) -> None:
        """Prefetched inputs start as the ones before them end: time them from now."""
        if c.waiting:
            timeout = float(c.pool.function.get("timeout"))
            for inp in c.started():
                self.timers.input_started(inp, timeout)

    def on_container_exit(self, container_id: str, returncode: int | None, cause: str,
                          ended: float | None = None) -> None:
        c = self.containers.pop(container_id, None)
        if c is None:
            return
        c.connected.set()
        pool = c.pool
        pool.containers.pop(c.id, None)
        fn = pool.function
        self.capacity.release(float(fn.get("cpu")), int(fn.get("memory")), c.reservation)
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
        self._queue_first(c, c.take_waiting())  # prefetched, not at fault: first in line again
        running = c.take_all()
        for inp in running:
            self.timers.input_done(inp)
            # Web requests cannot be retried: theirs says what to do instead.
            error = (failures.exited_while_running(cause) if inp.web is None
                     else failures.exited_while_serving(cause, inp.web.started))
            self._fail_attempt(inp, wire.FAILURE, error)
        if c.state == "starting" and not expected:
            error = c.init_error or failures.exited_before_ready(cause, self.logs.tail(c.id))
            for inp in pool.queue.clear():
                self._fail_attempt(inp, wire.FAILURE, error)
        self.dispatch(pool)
        for other in list(self.pools.values()):  # capacity was freed: waiting pools may start
            if other is not pool and other.queue:
                self.dispatch(other)

    # ---- outcomes --------------------------------------------------------------------------

    def _fail_attempt(self, inp: Input, status: str, data: bytes) -> None:
        """A failed attempt: retried after the function's delay while it has retries left, else
        the input's outcome. A web request that started answering is never retried."""
        delay = inp.pool.function.retry_delay(inp.attempts)
        started = inp.web is not None and inp.web.started  # what went out cannot be redone
        if delay is None or started or inp.pool.function.app_id in self.stopped_apps:
            self.finish(inp, status, data)
            return
        inp.attempts += 1
        if not self.outputs.note_attempts(inp.call_id, inp.attempts):
            input_rows.note_attempts(self.db, inp.id, inp.attempts)
        self.timers.later(delay, self._requeue, inp)

    def _requeue(self, inp: Input) -> None:
        live = self.by_call.get(inp.call_id)
        if live is None or inp not in live:
            return  # cancelled while waiting
        if inp.pool.function.app_id in self.stopped_apps:
            self.finish(inp, wire.FAILURE, failures.app_stopped())
            return
        inp.pool.queue.append(inp, self._storable(inp))
        self.dispatch(inp.pool)

    def _live(self, inp: Input) -> bool:
        """Whether the input still waits for its outcome (not cancelled or finished)."""
        return inp in self.by_call.get(inp.call_id, ())

    def _arguments_gone(self, inp: Input) -> None:
        self.finish(inp, wire.FAILURE, failures.arguments_gone())

    def finish(self, inp: Input, status: str, data: bytes | None) -> None:
        """The input's outcome: the answer to its web request, or an output of its call."""
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
        c.release(inp)
        inp.timer = None
        timeout = float(inp.pool.function.get("timeout"))
        self._fail_attempt(inp, wire.TIMEOUT, failures.input_timed_out(timeout))
        self._kill(c, f"was stopped: an input exceeded the {timeout:g} s timeout")

    # ---- stopping --------------------------------------------------------------------------

    def _kill(self, c: Container, reason: str) -> None:
        """Kill a container now; inputs it held go back to the queue unharmed."""
        self._requeue_running(c)
        c.state = "stopping"
        c.stop_reason = reason
        asyncio.create_task(self.backend.kill(c.id))

    def _requeue_running(self, c: Container) -> None:
        self._queue_first(c, c.take_all())

    def _queue_first(self, c: Container, inputs: list[Input]) -> None:
        """Inputs taken back from c go first in its pool's queue, in their order."""
        for inp in reversed(inputs):
            self.timers.input_done(inp)
            if inp.web is not None and inp.web.started:
                # Half a response went out: it cannot be sent again from another container.
                self.finish(inp, wire.FAILURE,
                             failures.stopped_while_responding(c.stop_reason or "stopped"))
                continue
            c.pool.queue.appendleft(inp)

    def stop_container(self, c: Container, reason: str) -> None:
        """Stop one container on request, as the autoscaler would: it gets its grace, and
        what it still holds then runs again elsewhere."""
        self._stop_container(c, reason)
        self.dispatch(c.pool)

    def _stop_container(self, c: Container, reason: str, grace: float = STOP_GRACE) -> None:
        if c.state == "stopping":
            return
        c.state = "stopping"
        c.stop_reason = reason
        if c.channel is not None:
            c.channel.send(messages.stop())
        self.timers.later(grace, self._enforce_stop, c)

    def _enforce_stop(self, c: Container) -> None:
        """A stopping container's grace is over: kill it if it has not exited."""
        if c.id in self.containers:
            asyncio.ensure_future(self.backend.kill(c.id))

    def cancel_call(self, call_id: str) -> int:
        live = list(self.by_call.get(call_id, ()))
        for pool in {inp.pool for inp in live if inp.container is None}:
            pool.queue.remove_call(call_id)
        for inp in live:
            c = inp.container
            if c is not None:
                c.release(inp)
                self.timers.input_done(inp)
                self._time_started(c)
                if c.channel is not None:
                    c.channel.send(messages.cancel([inp.id]))
            self.finish(inp, wire.CANCELLED, None)
        return len(live)

    def stop_app(self, app_id: str) -> None:
        self.stopped_apps.add(app_id)
        for pool in self.pools_of(app_id):
            for inp in pool.queue.clear():
                self.finish(inp, wire.FAILURE, failures.app_stopped())
            for c in list(pool.containers.values()):
                self._requeue_running(c)
                for inp in pool.queue.clear():
                    self.finish(inp, wire.FAILURE, failures.app_stopped())
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

    def _tick(self) -> None:
        self.scale_down()
        self.outputs.forget_idle(FORGET_IDLE, set(self.by_call))
