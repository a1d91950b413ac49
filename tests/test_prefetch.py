"""Prefetching, against the scheduler's FakeBackend: once a pool's inputs are known to be short,
a container is given more than it runs at once. Those wait in it in order, are timed only once
they start, are never failed for a container they did not run in, and can be cancelled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_scheduler import World, error_text, run, until, world

from firebox import wire
from firebox.server.core import dispatch
from firebox.server.core.functions import FunctionRecord
from firebox.server.core.pools import Input
from firebox.wire import messages


async def warm(w: World, fn: FunctionRecord) -> str:
    """A ready container of fn that has served one input of 1 ms (so the pool prefetches)."""
    first = await w.call(fn)
    [cid] = await w.launched(1)
    w.backend.ready(cid)
    await w.handed(cid)
    w.backend.output(cid, first.id)  # the fake reports 1 ms of execution
    assert (await w.outcome(first))[0] == wire.SUCCESS
    return cid


async def calls(w: World, fn: FunctionRecord, n: int) -> list[Input]:
    inputs = [await w.store(fn, b"args") for _ in range(n)]
    w.scheduler.submit(inputs[0].pool, inputs)
    return inputs


def test_short_inputs_are_prefetched_and_long_ones_are_not():
    fn = FunctionRecord("fu-1", "ap-1", "ws-1", "f", {})
    sched_pool = type("P", (), {"exec_mean": None, "router": None, "function": fn})()
    assert dispatch.prefetch(sched_pool) == 0  # nothing timed yet: nothing held back
    sched_pool.exec_mean = 0.001
    assert dispatch.prefetch(sched_pool) == 20  # 20 ms of work
    sched_pool.exec_mean = 0.00001
    assert dispatch.prefetch(sched_pool) == dispatch.PREFETCH_MAX
    sched_pool.exec_mean = 0.5
    assert dispatch.prefetch(sched_pool) == 0
    for spec in ({"web": {"type": "asgi"}}, {"batch_max_size": 4},
                 {"single_use_containers": True}):
        other = FunctionRecord("fu-2", "ap-1", "ws-1", "g", spec)
        sched_pool.function, sched_pool.exec_mean = other, 0.001
        assert dispatch.prefetch(sched_pool) == 0, spec


def test_prefetched_inputs_are_timed_from_when_they_start(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function(timeout=0.3)
            cid = await warm(w, fn)
            a, b, c = await calls(w, fn, 3)
            await w.handed(cid, 4)  # all three went to the one container at once
            held = w.scheduler.containers[cid]
            assert list(held.waiting) == [b.id, c.id]
            assert a.timer is not None and b.timer is None and c.timer is None
            await asyncio.sleep(0.2)
            w.backend.output(cid, a.id)
            assert b.timer is not None and c.timer is None and list(held.waiting) == [c.id]
            await asyncio.sleep(0.2)  # b has waited 0.4 s since it was handed out, run 0.2 s
            assert b.id in held.running
            # b hangs: it times out 0.3 s after it started, and its container is killed. c,
            # which never started, is not failed with it: it runs in the next container.
            status, data = await w.outcome(b)
            assert status == wire.TIMEOUT and "timeout of 0.3 s" in error_text(data)
            [_, new] = await w.launched(2)
            w.backend.ready(new)
            [item] = await w.handed(new)
            assert (item["id"], item["attempt"]) == (c.id, 0)
            w.backend.output(new, c.id, wire.SUCCESS, b"c")
            assert await w.outcome(c) == (wire.SUCCESS, b"c")

    run(main, tmp_path)


def test_a_container_lost_with_prefetched_inputs_loses_none_of_them(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function()  # no retries: only the input it was running fails
            cid = await warm(w, fn)
            inputs = await calls(w, fn, 5)
            await w.handed(cid, 6)
            w.backend.exit(cid, -9)
            status, data = await w.outcome(inputs[0])
            assert status == wire.FAILURE and "SIGKILL" in error_text(data)
            [_, new] = await w.launched(2)
            w.backend.ready(new)
            # The four it held unstarted run again, in their order, with no attempt counted.
            # The new container's pool was timed already: it takes them all at once.
            items = await w.handed(new, 4)
            assert [(i["id"], i["attempt"]) for i in items] == [
                (inp.id, 0) for inp in inputs[1:]]
            for inp in inputs[1:]:
                w.backend.output(new, inp.id, wire.SUCCESS, inp.id.encode())
            for inp in inputs[1:]:
                assert await w.outcome(inp) == (wire.SUCCESS, inp.id.encode())

    run(main, tmp_path)


def test_a_prefetched_input_can_be_cancelled_and_the_rest_keep_their_order(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function(timeout=5.0)
            cid = await warm(w, fn)
            a, b, c = await calls(w, fn, 3)
            await w.handed(cid, 4)
            assert w.scheduler.cancel_call(b.call_id) == 1
            held = w.scheduler.containers[cid]
            cancels = [m for m in w.backend.containers[cid].sent
                       if m[messages.TAG] == messages.CANCEL]
            assert cancels[-1]["ids"] == [b.id]
            assert list(held.running) == [a.id, c.id] and list(held.waiting) == [c.id]
            w.backend.output(cid, a.id)
            assert c.timer is not None and not held.waiting  # c starts next
            w.backend.output(cid, c.id)
            assert (await w.outcome(b))[0] == wire.CANCELLED
            assert (await w.outcome(c))[0] == wire.SUCCESS

    run(main, tmp_path)


def test_free_slots_of_every_container_fill_before_any_prefetches(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function(min_containers=2, max_containers=2, max_inputs=2)
            first = await w.call(fn)
            cids = await w.launched(2)
            w.backend.ready(cids[0])
            await w.handed(cids[0])
            w.backend.output(cids[0], first.id)
            w.backend.ready(cids[1])
            await calls(w, fn, 8)
            await until(lambda: sum(len(w.scheduler.containers[c].running) for c in cids) == 8)
            # Each container runs two; the four left are prefetched by the emptiest first.
            for cid in cids:
                held = w.scheduler.containers[cid]
                assert len(held.running) - len(held.waiting) == 2

    run(main, tmp_path)


def test_prefetched_inputs_are_topped_up_in_batches_once_half_have_started(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function()
            cid = await warm(w, fn)  # 1 ms inputs: 20 prefetched beyond the one it runs
            inputs = await calls(w, fn, 30)
            await w.handed(cid, 22)
            held = w.scheduler.containers[cid]
            sent = w.backend.containers[cid].sent

            def batches() -> list[int]:
                return [len(m["items"]) for m in sent if m[messages.TAG] == messages.INPUTS]

            assert len(held.running) == 21
            before = len(batches())
            for k, inp in enumerate(inputs[:9], 1):
                w.backend.output(cid, inp.id)
                await until(lambda k=k: len(held.running) == 21 - k)
            assert len(w.backend.containers[cid].inputs()) == 22  # 12 still held: no refill
            w.backend.output(cid, inputs[9].id)  # half have started: the 9 queued go in one
            await w.handed(cid, 31)
            assert batches()[before:] == [9]
            refilled = w.backend.containers[cid].inputs()[22:]
            assert [i["id"] for i in refilled] == [inp.id for inp in inputs[21:]]

    run(main, tmp_path)


def test_a_pool_times_its_containers_starts(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            fn = w.function()
            cid = await warm(w, fn)
            pool = w.scheduler.containers[cid].pool
            assert pool.start_mean is not None and 0 < pool.start_mean < 5
            assert pool.exec_mean is not None  # both feed the autoscaler

    run(main, tmp_path)
