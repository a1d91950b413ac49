"""The scheduler against a FakeBackend and a real database: retries, timeouts, lost containers,
eviction and scaling, each in milliseconds with no process started; and the autoscaler's and
capacity's policies on their own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fake_backend import FakeBackend

from firebox import wire
from firebox.backends.base import CapacityReport, NodeCapacity
from firebox.backends.gpus import Gpu
from firebox.exception import InvalidError
from firebox.server.core import autoscaler
from firebox.server.core.capacity import Capacity
from firebox.server.core.functions import FunctionRecord
from firebox.server.core.logs import LogHub
from firebox.server.core.metering import Meter
from firebox.server.core.outputs import OutputLog
from firebox.server.core.plane import ControlPlane, Settings
from firebox.server.core.pools import Input
from firebox.server.core.recovery import recover
from firebox.server.core.scheduler import Scheduler
from firebox.store import schema as s
from firebox.store.db import Database
from firebox.wire import messages

MIB = 1024 * 1024
RETRY_NOW = {"max_retries": 2, "initial_delay": 0.0, "backoff_coefficient": 1.0,
             "max_delay": 0.0}


@dataclass
class World:
    scheduler: Scheduler
    backend: FakeBackend
    db: Database
    outputs: OutputLog
    calls: int = 0

    def function(self, **spec: Any) -> FunctionRecord:
        fid = f"fu-{len(self.scheduler.functions)}"
        fn = FunctionRecord(fid, "ap-1", "ws-1", f"f{fid}", spec)
        self.scheduler.functions[fid] = fn
        return fn

    async def call(self, fn: FunctionRecord, args: bytes = b"args") -> Input:
        """Store a call of one input, as the calls service does, and submit it."""
        inp = await self.store(fn, args)
        self.scheduler.submit(inp.pool, [inp])
        return inp

    async def store(self, fn: FunctionRecord, args: bytes) -> Input:
        """Store a call of one input, and open its output log."""
        self.calls += 1
        call_id, input_id, now = f"fc-{self.calls}", f"in-{self.calls}", time.time()
        await self.db.write(lambda conn: conn.execute(s.calls.insert().values(
            id=call_id, function_id=fn.id, workspace_id=fn.workspace_id, kind="call",
            pool_key="", closed=True, cancelled=False, created_at=now)))
        await self.db.write(lambda conn: conn.execute(s.inputs.insert().values(
            id=input_id, call_id=call_id, idx=0, args=args, state=wire.PENDING, attempts=0,
            created_at=now)))
        await self.outputs.open(call_id)
        return Input(input_id, call_id, 0, args, 0, self.scheduler.pool(fn, "", None), None)

    async def outcome(self, inp: Input) -> tuple[str, bytes | None]:
        got = await self.outputs.read(inp.call_id, 0, wait=2.0)
        assert got, f"no output for {inp.id}"
        _, _, status, data = got[-1]
        return status, data

    async def handed(self, cid: str, count: int = 1) -> list[messages.InputItem]:
        """The inputs a container was sent, once it was sent `count` of them (an input whose
        arguments are read back from the database arrives a moment later)."""
        await until(lambda: len(self.backend.containers[cid].inputs()) >= count)
        return self.backend.containers[cid].inputs()

    async def launched(self, count: int) -> list[str]:
        """The ids of the first `count` containers started, once they are."""
        await until(lambda: len(self.backend.containers) >= count)
        return list(self.backend.containers)[:count]


@asynccontextmanager
async def world(tmp_path: Path, backend: FakeBackend | None = None) -> AsyncIterator[World]:
    db = Database(f"sqlite:///{tmp_path / 'firebox.db'}")
    await db.migrate()
    db.start()
    outputs, logs = OutputLog(db), LogHub(db)
    await logs.open()
    fake = backend or FakeBackend()
    scheduler = Scheduler(db, fake, outputs, logs, Capacity(fake.capacity()),
                          container_env=lambda c: {}, meter=Meter(db, tmp_path))
    fake.scheduler = scheduler
    try:
        yield World(scheduler, fake, db, outputs)
    finally:
        await fake.close()
        await outputs.commit_pending()
        await logs.stored()
        await db.close()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.001)


def run(test: Callable[[Path], Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    asyncio.run(test(tmp_path))


def error_text(data: bytes | None) -> str:
    assert data is not None
    return str(wire.unpack(data)["message"])


# ---- retries, timeouts and lost containers -------------------------------------------------


def test_input_of_a_crashed_container_runs_again_up_to_its_retries_then_fails(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            inp = await w.call(w.function(retries=RETRY_NOW), b"payload")
            for attempt in range(3):
                [*_, cid] = await w.launched(attempt + 1)
                w.backend.ready(cid)
                [item] = await w.handed(cid)
                # Each retry's arguments are read back from the database: the same ones.
                assert (item["attempt"], item["args"]) == (attempt, b"payload")
                w.backend.exit(cid, 3)
            status, data = await w.outcome(inp)
            assert status == wire.FAILURE
            assert "exited with code 3" in error_text(data)
            assert "retries=" in error_text(data)
            rows = await w.db.read(sa.select(s.inputs.c.attempts).where(s.inputs.c.id == inp.id))
            assert rows[0][0] == 2  # the attempts made are stored for a restart

    run(main, tmp_path)


def test_input_that_fails_in_its_code_is_retried_in_the_same_container(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            inp = await w.call(w.function(retries=RETRY_NOW))
            [cid] = await w.launched(1)
            w.backend.ready(cid)
            error = wire.error_record("ValueError", "bad")
            w.backend.output(cid, inp.id, wire.FAILURE, error)
            await w.handed(cid, 2)
            w.backend.output(cid, inp.id, wire.SUCCESS, b"fine")
            assert await w.outcome(inp) == (wire.SUCCESS, b"fine")
            assert len(w.backend.containers) == 1

    run(main, tmp_path)


def test_input_past_its_timeout_fails_and_its_container_is_killed(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            inp = await w.call(w.function(timeout=0.02))
            [cid] = await w.launched(1)
            w.backend.ready(cid)  # and then it hangs: no output ever comes
            status, data = await w.outcome(inp)
            assert status == wire.TIMEOUT
            assert "timeout of 0.02 s" in error_text(data)
            await until(lambda: w.backend.containers[cid].exit_code == -9)
            assert cid not in w.scheduler.containers

    run(main, tmp_path)


def test_container_that_exits_mid_input_fails_it_without_retries(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            inp = await w.call(w.function())
            [cid] = await w.launched(1)
            w.backend.ready(cid)
            w.backend.exit(cid, -9)
            status, data = await w.outcome(inp)
            assert status == wire.FAILURE
            assert "The container running this input was killed by signal SIGKILL" in (
                error_text(data))

    run(main, tmp_path)


def test_container_that_exits_before_ready_fails_the_queue_with_why(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function()
            first, second = await w.call(fn), await w.call(fn)
            [cid] = await w.launched(1)
            w.backend.exit(cid, 1)
            for inp in (first, second):
                status, data = await w.outcome(inp)
                assert status == wire.FAILURE
                assert "exited with code 1 before it was ready" in error_text(data)

    run(main, tmp_path)


def test_container_that_cannot_be_started_fails_its_inputs_with_the_reason(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            w.backend.fail_start = RuntimeError("no room on the node")
            inp = await w.call(w.function())
            status, data = await w.outcome(inp)
            assert status == wire.FAILURE
            assert "could not be started: no room on the node" in error_text(data)
            assert not w.scheduler.containers

    run(main, tmp_path)


def test_input_of_a_container_stopped_by_a_redeploy_runs_again_unharmed(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function()
            inp = await w.call(fn)
            [old] = await w.launched(1)
            w.backend.ready(old)
            w.scheduler.replace_function(FunctionRecord(fn.id, fn.app_id, fn.workspace_id,
                                                        fn.name, {"cpu": 0.25}))
            assert w.backend.containers[old].got(messages.STOP)
            w.backend.exit(old, 0)  # it stopped with the input still running
            [_, new] = await w.launched(2)
            assert w.backend.containers[new].launch.cpu == 0.25  # the new version
            w.backend.ready(new)
            [item] = await w.handed(new)
            assert item["attempt"] == 0  # not counted against its retries
            w.backend.output(new, inp.id, wire.SUCCESS, b"done")
            assert await w.outcome(inp) == (wire.SUCCESS, b"done")

    run(main, tmp_path)


def test_idle_container_of_another_function_is_evicted_to_make_room(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path, FakeBackend(cores=1.0)) as w:
            first, second = w.function(cpu=1.0), w.function(cpu=1.0)
            done = await w.call(first)
            [idle] = await w.launched(1)
            w.backend.ready(idle)
            w.backend.output(idle, done.id)
            waiting = await w.call(second)  # no core left: the idle container must go
            assert w.backend.containers[idle].got(messages.STOP)
            assert "make room" in (w.scheduler.containers[idle].stop_reason or "")
            w.backend.exit(idle, 0)
            [_, cid] = await w.launched(2)
            w.backend.ready(cid)
            w.backend.output(cid, waiting.id, wire.SUCCESS, b"ran")
            assert await w.outcome(waiting) == (wire.SUCCESS, b"ran")

    run(main, tmp_path)


def test_pending_inputs_are_queued_again_after_a_restart(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as before:
            kept, stopped = before.function(), before.function()
            pending = await before.store(kept, b"kept")
            lost = await before.store(stopped, b"lost")
        async with world(tmp_path) as w:  # a new scheduler on the same database
            functions = {kept.id: kept, stopped.id: stopped}
            w.scheduler.stopped_apps.add("ap-2")
            stopped.app_id = "ap-2"

            async def load(function_id: str) -> FunctionRecord | None:
                return functions.get(function_id)

            assert await recover(w.scheduler, load) == 2
            status, data = await w.outcome(lost)
            assert status == wire.FAILURE and "The app was stopped" in error_text(data)
            [cid] = await w.launched(1)
            w.backend.ready(cid)
            [item] = await w.handed(cid)
            assert (item["id"], item["args"]) == (pending.id, b"kept")  # read back from the rows

    run(main, tmp_path)


def test_containers_get_the_gpus_and_node_they_reserved_and_wait_for_a_free_one(tmp_path):
    async def main(tmp_path: Path) -> None:
        fake = FakeBackend(gpus=(Gpu(0, "H100"), Gpu(1, "H100")))
        async with world(tmp_path, fake) as w:
            fn = w.function(gpu=[{"type": "H100", "count": 1}])
            inputs = [await w.call(fn) for _ in range(3)]
            cids = await w.launched(2)
            await asyncio.sleep(0.005)
            launches = [fake.containers[cid].launch for cid in cids]
            assert [(x.node, x.gpus) for x in launches] == [("fake", (0,)), ("fake", (1,))]
            assert len(fake.containers) == 2  # the third input waits for a GPU
            assert w.scheduler.pools[(fn.id, "")].waiting_for_capacity
            for cid in cids:
                fake.ready(cid)
            fake.exit(cids[0], 1)  # its input fails; its GPU is free again
            [*_, third] = await w.launched(3)
            assert fake.containers[third].launch.gpus == (0,)
            fake.ready(third)
            [item] = await w.handed(third)
            assert item["id"] == inputs[2].id
            assert (await w.outcome(inputs[0]))[0] == wire.FAILURE

    run(main, tmp_path)


# ---- scaling ---------------------------------------------------------------------------------


def test_idle_container_is_stopped_after_the_scaledown_window(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            inp = await w.call(w.function(scaledown_window=0.03))
            [cid] = await w.launched(1)
            w.backend.ready(cid)
            w.backend.output(cid, inp.id)
            w.scheduler.scale_down()
            assert not w.backend.containers[cid].got(messages.STOP)  # idle, but not for long
            await asyncio.sleep(0.04)
            w.scheduler.scale_down()
            assert w.backend.containers[cid].got(messages.STOP)
            w.backend.exit(cid, 0)
            w.scheduler.scale_down()
            assert not w.scheduler.pools  # nothing left of the pool

    run(main, tmp_path)


def test_min_containers_are_kept_warm_and_replaced_when_they_die(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            w.scheduler.ensure_warm(w.function(min_containers=1, scaledown_window=0.0))
            [cid] = await w.launched(1)  # before any input
            w.backend.ready(cid)
            await asyncio.sleep(0.002)
            w.scheduler.scale_down()
            assert not w.backend.containers[cid].got(messages.STOP)
            w.backend.exit(cid, 1)
            await w.launched(2)

    run(main, tmp_path)


def test_max_containers_bounds_a_burst(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function(max_containers=2)
            inputs = [await w.call(fn) for _ in range(5)]
            cids = await w.launched(2)
            await asyncio.sleep(0.005)
            assert len(w.backend.containers) == 2
            for cid in cids:
                w.backend.ready(cid)
            for _ in range(3):  # each container holds one input at a time: 2, 2, then 1
                for cid in cids:
                    running = w.scheduler.containers[cid].running
                    for item in w.backend.containers[cid].inputs():
                        if item["id"] in running:
                            w.backend.output(cid, item["id"])
            for inp in inputs:
                assert (await w.outcome(inp))[0] == wire.SUCCESS

    run(main, tmp_path)


# ---- the autoscaler's policy, on its own --------------------------------------------------


@dataclass
class Seen:
    id: str
    state: str = "ready"
    running: tuple[str, ...] = ()
    idle_since: float = 0.0


def pool(limits: autoscaler.Limits, queued: int = 0, running: int = 0,
         containers: list[Seen] | None = None, now: float = 100.0) -> autoscaler.PoolState:
    return autoscaler.PoolState(limits, queued, running, containers or [], now)


def test_wanted_containers_follow_demand_within_the_limits():
    limits = autoscaler.Limits(target_inputs=4, buffer_containers=1, max_containers=5)
    assert autoscaler.wanted(limits, 0) == 0  # no buffer without demand
    assert autoscaler.wanted(limits, 1) == 2
    assert autoscaler.wanted(limits, 9) == 4
    assert autoscaler.wanted(limits, 100) == 5
    assert autoscaler.wanted(autoscaler.Limits(min_containers=2), 0) == 2


def test_short_inputs_get_only_the_containers_their_work_needs_before_another_could_start():
    limits = autoscaler.Limits(max_containers=16)
    assert autoscaler.wanted(limits, 20_000) == 16  # nothing observed yet: one per input
    # 20,000 inputs of 10 us are 0.2 s of work: done before a 0.25 s start, one container.
    assert autoscaler.wanted(limits, 20_000, 1e-5, 0.25) == 1
    assert autoscaler.wanted(limits, 20_000, 1e-4, 0.25) == 8  # 2 s of work
    assert autoscaler.wanted(limits, 64, 1.0, 0.25) == 16  # long inputs: one each, to the limit
    assert autoscaler.wanted(limits, 3, 1.0, 0.25) == 3
    assert autoscaler.wanted(limits, 3, 1.0, 0.01) == 3
    # Four inputs at a time in each container: 400 of 10 ms are 1 s of work for one.
    assert autoscaler.wanted(autoscaler.Limits(target_inputs=4), 400, 0.01, 0.25) == 4
    # The buffer and the minimum still apply on top.
    assert autoscaler.wanted(autoscaler.Limits(buffer_containers=1), 100, 1e-5, 0.25) == 2
    assert autoscaler.wanted(autoscaler.Limits(min_containers=3), 100, 1e-5, 0.25) == 3
    assert autoscaler.wanted(autoscaler.Limits(), 0, 1e-5, 0.25) == 0
    state = autoscaler.PoolState(limits, 15_000, 5_000, [Seen("a")], 100.0, 1e-5, 0.25)
    assert autoscaler.starts(state) == 0


def test_starts_count_containers_not_stopping():
    limits = autoscaler.Limits()
    containers = [Seen("a", "starting"), Seen("b", "stopping")]
    assert autoscaler.starts(pool(limits, queued=3, containers=containers)) == 2
    assert autoscaler.starts(pool(limits, queued=0, containers=containers)) == 0


def test_stops_take_the_longest_idle_past_the_window_while_there_is_surplus():
    limits = autoscaler.Limits(scaledown_window=10.0, min_containers=1)
    containers = [Seen("new", idle_since=95.0), Seen("old", idle_since=50.0),
                  Seen("older", idle_since=10.0), Seen("busy", running=("in-1",))]
    assert autoscaler.stops(pool(limits, running=1, containers=containers)) == ["older", "old"]
    # Wanting three of the four, only one goes.
    assert autoscaler.stops(pool(limits, running=3, containers=containers)) == ["older"]
    assert autoscaler.stops(pool(limits, running=1, containers=containers, now=55.0)) == [
        "older"]


def test_evictions_free_just_enough_cores_longest_idle_first():
    idle = [autoscaler.Idle("a", 1.0, 30.0), autoscaler.Idle("b", 2.0, 10.0),
            autoscaler.Idle("c", 1.0, 20.0)]
    assert autoscaler.evictions(idle, free_cpu=0.0, cpu=2.5) == ["b", "c"]
    assert autoscaler.evictions(idle, free_cpu=3.0, cpu=2.5) == []


# ---- capacity, from what the backend reports -------------------------------------------------


def report(*nodes: NodeCapacity) -> CapacityReport:
    return CapacityReport(nodes)


def test_capacity_reserves_on_the_first_node_with_room_for_all_of_it():
    a = NodeCapacity("a", 2.0, 1024 * MIB)
    b = NodeCapacity("b", 4.0, 4096 * MIB, (Gpu(0, "H100"), Gpu(1, "H100")))
    capacity = Capacity(report(a, b))
    assert (capacity.cpu, capacity.memory_mb) == (6.0, 5120)
    first = capacity.reserve(2.0, 512)
    assert first is not None and first.node == "a"
    gpu = capacity.reserve(1.0, 512, [{"type": "H100", "count": 2}])
    assert gpu is not None and (gpu.node, gpu.gpus) == ("b", (0, 1))
    assert capacity.gpu_label(gpu) == "H100:2"
    assert capacity.reserve(1.0, 512, [{"type": "H100", "count": 1}]) is None
    capacity.release(1.0, 512, gpu)
    assert capacity.reserve(1.0, 512, [{"type": "any", "count": 1}]) is not None
    assert capacity.used_cpu == 3.0


def test_capacity_says_why_a_request_never_fits():
    one = Capacity(report(NodeCapacity("here", 2.0, 1024 * MIB, (Gpu(0, "A100-80GB"),))))
    assert one.never_fits(4.0, 128) == "cpu=4.0 is more than this machine's 2 cores"
    assert one.never_fits(1.0, 2048) == "memory=2048 MiB is more than this machine's 1024 MiB"
    # A GPU no node has is not refused (calls wait for one to join), only said.
    assert one.never_fits(1.0, 128, [{"type": "A100-80GB", "count": 2}]) is None
    problem = one.lacks_gpu([{"type": "A100-80GB", "count": 2}])
    assert problem == "gpu=A100-80GB:2 is more than this machine has (1 x A100-80GB)"
    assert one.lacks_gpu([{"type": "A100", "count": 1}]) is None
    assert one.lacks_gpu(None) is None
    two = Capacity(report(NodeCapacity("a", 2.0, 1024 * MIB), NodeCapacity("b", 8.0, 512 * MIB)))
    assert two.never_fits(8.0, 512) is None  # each fits on some node
    assert "any node's 1024 MiB" in (two.never_fits(1.0, 2048) or "")


def test_an_unknown_backend_is_refused_by_name(tmp_path):
    settings = Settings.for_state_dir(tmp_path, "http://127.0.0.1:1")
    settings.backend = "ray"
    with pytest.raises(InvalidError, match="no backend named 'ray'; choose one of 'local'"):
        ControlPlane(settings)

