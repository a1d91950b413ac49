"""Call semantics of Function and FunctionCall against a real server and real containers."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from apps import calls

import firebox
from firebox.exception import FunctionTimeoutError, InvalidError
from firebox.sdk import function as function_mod
from firebox.sdk.map_inputs import Finished


@pytest.fixture(scope="module", autouse=True)
def running(server):
    with calls.app.run(show_logs=False):
        yield


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# ---- remote and local ----------------------------------------------------------------------


def test_remote_and_local():
    assert calls.square.remote(7) == 49
    assert calls.add.remote(1, 2, c=3) == 6
    assert calls.square.local(5) == 25
    here = calls.where.local()
    assert here["is_local"] is True
    assert here["input_id"] is None and here["call_id"] is None


def test_remote_on_a_generator_says_use_remote_gen():
    with pytest.raises(InvalidError, match="remote_gen"):
        calls.countdown.remote(3)
    with pytest.raises(InvalidError, match=r"\.remote\("):
        list(calls.square.remote_gen(3))


def test_context_inside_a_container():
    there = calls.where.remote()
    assert there["is_local"] is False
    assert there["modal_is_remote"] == "1"
    assert there["input_id"] and there["call_id"]
    assert firebox.is_local() is True
    assert firebox.current_input_id() is None
    assert firebox.current_function_call_id() is None


def test_call_id_inside_matches_the_spawned_call():
    fc = calls.where.spawn()
    assert fc.get(timeout=60)["call_id"] == fc.object_id
    input_id, call_id = calls.async_where.spawn().get(timeout=60)
    assert input_id and call_id and call_id.startswith("fc-")


def test_inputs_of_one_map_share_a_call_and_differ_in_input():
    results = list(calls.where.starmap([(), (), ()]))
    assert len({r["call_id"] for r in results}) == 1
    assert len({r["input_id"] for r in results}) == 3


# ---- map, starmap, for_each ------------------------------------------------------------------


def test_map_in_input_order():
    assert list(calls.square.map(range(20))) == [x * x for x in range(20)]
    assert list(calls.square.map([])) == []


def test_map_zips_iterables_and_passes_kwargs():
    assert list(calls.add.map([1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    assert list(calls.add.map([1, 2], [10, 20, 30])) == [11, 22]
    assert list(calls.add.map([1, 2], kwargs={"c": 100})) == [101, 102]


def test_map_unordered_yields_in_completion_order():
    # Inputs run side by side in one container; the slow one finishes last.
    slow_first = [(2.0, "slow"), (0.0, "a"), (0.0, "b"), (0.0, "c")]
    fn = calls.sleepy.with_concurrency(max_inputs=4)
    unordered = list(fn.starmap(slow_first, order_outputs=False))
    assert sorted(unordered) == ["a", "b", "c", "slow"]
    assert unordered[-1] == "slow"
    assert list(fn.starmap(slow_first)) == ["slow", "a", "b", "c"]


def test_map_raises_the_first_failure():
    with pytest.raises(calls.CallError, match="bad input 3"):
        list(calls.fail_on.map(range(6)))


def test_map_return_exceptions():
    results = list(calls.fail_on.map(range(6), return_exceptions=True))
    assert results[:3] == [0, 1, 2] and results[4:] == [4, 5]
    assert isinstance(results[3], calls.CallError)
    assert str(results[3]) == "bad input 3"


def test_a_map_keeps_its_memory_to_what_ends_out_of_order():
    done = Finished(window=10)
    assert done.add(1) and done.add(2) and not done.add(2)  # a repeated outcome is not counted
    assert (done.low, done.above, len(done)) == (0, {1, 2}, 2)
    assert done.add(0) and (done.low, done.above, len(done)) == (3, set(), 3)
    assert not done.add(0)
    for idx in range(3, 100_000):
        done.add(idx)
    assert done.above == set() and len(done) == 100_000


def test_a_map_has_at_most_its_window_of_inputs_out(monkeypatch):
    monkeypatch.setattr(function_mod, "MAP_WINDOW", 30)
    monkeypatch.setattr(function_mod, "INPUT_BATCH", 10)
    out: list[int] = []  # inputs posted without an outcome, as each batch is posted
    room = Finished.room

    async def watched(self: Finished, posted: int) -> None:
        await room(self, posted)
        out.append(posted - len(self))

    monkeypatch.setattr(Finished, "room", watched)
    assert list(calls.square.map(range(300))) == [x * x for x in range(300)]
    assert len(out) == 30 and max(out) < 30


def test_starmap():
    assert list(calls.add.starmap([(1, 2), (3, 4, 5)])) == [3, 12]
    assert list(calls.add.starmap([(1,), (2,)], kwargs={"b": 10})) == [11, 12]
    results = list(calls.fail_on.starmap([(1, 1), (2, 5)], return_exceptions=True))
    assert isinstance(results[0], calls.CallError) and results[1] == 2


def test_for_each_runs_every_input(tmp_path):
    paths = [str(tmp_path / f"f{i}") for i in range(5)]
    assert calls.touch.for_each(paths, kwargs={"text": "each"}) is None
    assert all(Path(p).read_text() == "each" for p in paths)


def test_for_each_exceptions():
    with pytest.raises(calls.CallError):
        calls.fail_on.for_each([1, 2, 3])
    assert calls.fail_on.for_each([1, 2, 3], ignore_exceptions=True) is None


# ---- spawn and FunctionCall ------------------------------------------------------------------


def test_spawn_and_get_with_timeouts():
    fc = calls.sleepy.spawn(1.0, "late")
    assert isinstance(fc, firebox.FunctionCall)
    with pytest.raises(TimeoutError):
        fc.get(timeout=0)
    assert fc.get() == "late"
    assert fc.get(timeout=0) == "late"  # a finished call answers at once, again
    assert fc.get(timeout=5) == "late"


def test_spawn_failure_arrives_on_get():
    fc = calls.fail_on.spawn(3)
    with pytest.raises(calls.CallError, match="bad input 3"):
        fc.get(timeout=60)


def test_from_id_in_a_fresh_handle():
    fc = calls.square.spawn(12)
    again = firebox.FunctionCall.from_id(fc.object_id)
    assert again.object_id == fc.object_id
    assert again.get(timeout=60) == 144


def test_gather_keeps_argument_order():
    slow = calls.sleepy.spawn(1.0, "first")
    fast = calls.sleepy.spawn(0.0, "second")
    assert firebox.FunctionCall.gather(slow, fast) == ["first", "second"]
    assert firebox.FunctionCall.gather() == []


def test_gather_raises_a_failure():
    ok, bad = calls.square.spawn(2), calls.fail_on.spawn(3)
    with pytest.raises(calls.CallError, match="bad input 3"):
        firebox.FunctionCall.gather(ok, bad)


def test_cancel_stops_a_running_call(tmp_path):
    marker = tmp_path / "started"
    fc = calls.block.spawn(120, str(marker))
    wait_for(marker)
    fc.cancel()
    with pytest.raises(firebox.Error, match="cancelled"):
        fc.get(timeout=30)
    # block has one container: the next call gets it only if the cancelled input let go.
    assert calls.block.spawn(0).get(timeout=60) == 0


def test_spawn_map_queues_every_input(tmp_path):
    paths = [str(tmp_path / f"s{i}") for i in range(6)]
    assert calls.touch.spawn_map(paths) is None
    for p in paths:
        wait_for(Path(p))


# ---- generators ------------------------------------------------------------------------------


def test_remote_gen_sync_iteration():
    assert list(calls.countdown.remote_gen(4)) == [4, 3, 2, 1]
    assert list(calls.async_countdown.remote_gen(3)) == [3, 2, 1]
    assert list(calls.countdown.remote_gen(0)) == []


def test_remote_gen_raises_after_its_values():
    got = []
    with pytest.raises(calls.CallError, match="stopped after 2"):
        for value in calls.gen_fails_after.remote_gen(2):
            got.append(value)
    assert got == [0, 1]


def test_remote_gen_async_for():
    async def main():
        return [v async for v in calls.countdown.remote_gen.aio(3)]

    assert asyncio.run(main()) == [3, 2, 1]


# ---- the .aio forms from user event loops --------------------------------------------------


def test_aio_forms(tmp_path):
    async def main():
        out = {}
        out["remote"] = await calls.square.remote.aio(3)
        out["map"] = [v async for v in calls.add.map.aio([1, 2], [3, 4])]
        out["map_exc"] = [v async for v in calls.fail_on.map.aio([3], return_exceptions=True)]
        out["starmap"] = [v async for v in calls.add.starmap.aio([(1, 1), (2, 2)])]
        await calls.touch.for_each.aio([str(tmp_path / "aio-each")])
        fc = await calls.square.spawn.aio(5)
        out["get"] = await fc.get.aio(timeout=60)
        with pytest.raises(TimeoutError):
            await calls.sleepy.spawn(1.0).get.aio(timeout=0)
        out["gather"] = await firebox.FunctionCall.gather.aio(
            await calls.square.spawn.aio(1), await calls.square.spawn.aio(2)
        )
        out["gen"] = [v async for v in calls.async_countdown.remote_gen.aio(2)]
        await calls.touch.spawn_map.aio([str(tmp_path / "aio-spawn-map")])
        # Several calls at once from one user loop.
        out["concurrent"] = await asyncio.gather(*(calls.square.remote.aio(i) for i in range(5)))
        return out

    out = asyncio.run(main())
    assert out == {
        "remote": 9,
        "map": [4, 6],
        "map_exc": [out["map_exc"][0]],
        "starmap": [2, 4],
        "get": 25,
        "gather": [1, 4],
        "gen": [2, 1],
        "concurrent": [0, 1, 4, 9, 16],
    }
    assert isinstance(out["map_exc"][0], calls.CallError)
    assert (tmp_path / "aio-each").exists()
    wait_for(tmp_path / "aio-spawn-map")


def test_aio_cancel_and_from_id(tmp_path):
    marker = tmp_path / "started"

    async def main():
        fc = await calls.block.spawn.aio(120, str(marker))
        while not marker.exists():
            await asyncio.sleep(0.05)
        await firebox.FunctionCall.from_id(fc.object_id).cancel.aio()
        with pytest.raises(firebox.Error, match="cancelled"):
            await fc.get.aio(timeout=30)

    asyncio.run(main())


# ---- variants ------------------------------------------------------------------------------


def test_with_options_timeout():
    with pytest.raises(FunctionTimeoutError):
        calls.sleepy.with_options(timeout=1).remote(30)
    assert calls.sleepy.remote(0, "default timeout") == "default timeout"


def test_with_options_retries(tmp_path):
    with pytest.raises(calls.CallError, match="attempt 1 fails"):
        calls.flaky.remote(str(tmp_path / "none"), 1)
    retrying = calls.flaky.with_options(
        retries=firebox.Retries(max_retries=2, initial_delay=0.0)
    )
    assert retrying.remote(str(tmp_path / "two"), 2) == 3
    with pytest.raises(calls.CallError, match="attempt 3 fails"):
        retrying.remote(str(tmp_path / "three"), 5)


def test_with_options_gets_its_own_containers():
    plain = calls.where.remote()["container"]
    sized = calls.where.with_options(cpu=0.25, memory=256)
    assert sized.remote()["container"] != plain
    assert sized.remote()["is_local"] is False
    with pytest.raises(InvalidError, match="min_containers"):
        calls.where.with_options(keep_warm=1)
    with pytest.raises(InvalidError, match="unknown"):
        calls.where.with_options(cpus=1)


def test_concurrent_sync_function_runs_inputs_on_threads():
    key = uuid.uuid4().hex
    results = list(calls.meet_threads.map([key] * 4, [4] * 4))
    assert len({container for container, _ in results}) == 1
    assert len({thread for _, thread in results}) == 4


def test_concurrent_async_function_runs_inputs_as_tasks():
    key = uuid.uuid4().hex
    results = list(calls.meet_tasks.map([key] * 4, [4] * 4))
    assert len({container for container, _ in results}) == 1
    assert len({thread for _, thread in results}) == 1


def test_with_concurrency():
    key = uuid.uuid4().hex
    results = list(calls.meet_plain.with_concurrency(max_inputs=3).map([key] * 3, [3] * 3))
    assert len({container for container, _ in results}) == 1
    assert len({thread for _, thread in results}) == 3
    with pytest.raises(InvalidError):
        calls.meet_plain.with_concurrency(max_inputs=2, target_inputs=3)


def test_prefetched_inputs_still_run_max_inputs_at_once():
    # 1 ms inputs are prefetched (up to 20 held in the container beside the one it runs).
    assert set(calls.overlap.map([0.001] * 300)) == {1}
    assert set(calls.overlap_async.map([0.001] * 300)) == {1}
    assert max(calls.overlap_async.with_concurrency(max_inputs=3).map([0.001] * 300)) <= 3


def test_a_container_killed_with_prefetched_inputs_loses_none(tmp_path):
    marker = str(tmp_path / "died")
    got = list(calls.die_once.map(range(300), [marker] * 300, [150] * 300,
                                  return_exceptions=True))
    failed = [i for i, r in enumerate(got) if isinstance(r, Exception)]
    assert failed == [150], failed  # only the input it was running when it died
    assert "exited with code 1" in str(got[150])
    assert [r for i, r in enumerate(got) if i != 150] == [i for i in range(300) if i != 150]


def test_a_map_left_early_frees_its_prefetched_inputs_container():
    results = calls.overlap.map([0.002] * 3000)
    assert [next(results) for _ in range(100)] == [1] * 100
    results.close()  # cancels the rest, prefetched ones included
    # The function's one container takes a new call at once, not after 3,000 inputs. (What
    # it returns is not checked: cancelled inputs' threads end their sleeps beside the next.)
    assert calls.overlap.spawn(0).get(timeout=3) >= 1


def test_batched_function_gets_lists():
    results = list(calls.batch_sizes.map(range(16)))
    assert [x for x, _ in results] == list(range(16))
    sizes = [n for _, n in results]
    assert max(sizes) > 1 and max(sizes) <= 8
    assert calls.batch_sizes.remote(5)[0] == 5
    assert list(calls.async_batch_double.map(range(6))) == [0, 2, 4, 6, 8, 10]


def test_with_batching():
    smaller = calls.batch_sizes.with_batching(max_batch_size=2, wait_ms=500)
    sizes = [n for _, n in smaller.map(range(8))]
    assert max(sizes) == 2
    with pytest.raises(InvalidError):
        calls.batch_sizes.with_batching(max_batch_size=0, wait_ms=10)


def test_batched_wrong_length_is_a_clear_error():
    with pytest.raises(InvalidError, match="list as long as its input"):
        list(calls.batch_wrong_length.map(range(4)))
