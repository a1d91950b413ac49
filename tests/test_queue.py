"""Queues: FIFO partitions, blocking gets and puts, limits, TTLs, durability, workspaces."""

import asyncio
import queue
import threading

import pytest
from apps import objects
from other_workspace import other_workspace_env, run_cli, run_python

import firebox as modal


def test_fifo_partitions_and_len(server):
    with modal.Queue.ephemeral() as q:
        q.put_many([1, 2, 3])
        q.put("a", partition="p1")
        q.put_many(["b", "c"], partition="p1")
        assert q.len() == 3 and q.len(partition="p1") == 3 and q.len(total=True) == 6
        assert q.get() == 1
        assert q.get_many(10) == [2, 3]
        assert q.get(block=False) is None and q.get_many(5, block=False) == []
        assert q.get(partition="p1") == "a"
        assert list(q.iterate(partition="p1")) == ["b", "c"]  # iterate does not take
        assert q.len(partition="p1") == 2
        q.put(4)
        q.clear(partition="p1")
        assert q.len(partition="p1") == 0 and q.len() == 1
        q.put("x", partition="p2")
        q.clear(all=True)
        assert q.len(total=True) == 0


def test_blocking_get_times_out_and_wakes_on_put(server):
    with modal.Queue.ephemeral() as q:
        with pytest.raises(queue.Empty):
            q.get(timeout=0.3)
        with pytest.raises(queue.Empty):
            q.get_many(3, timeout=0.2)
        got = []
        reader = threading.Thread(target=lambda: got.append(q.get(timeout=60)))
        reader.start()
        q.put("wake")
        reader.join()
        assert got == ["wake"]


def test_full_partition_and_limits(server):
    with modal.Queue.ephemeral() as q:
        q.put_many(list(range(5000)), partition="full")
        with pytest.raises(queue.Full):
            q.put("one more", block=False, partition="full")
        with pytest.raises(queue.Full):
            q.put("one more", timeout=0.2, partition="full")
        freed = threading.Timer(0.2, lambda: q.get(partition="full"))
        freed.start()
        q.put("fits after a get", partition="full")  # blocks until the get makes room
        freed.join()
        assert q.len(partition="full") == 5000
        with pytest.raises(modal.exception.InvalidError, match="1 MiB"):
            q.put(b"x" * (1024 * 1024 + 1))
        with pytest.raises(modal.exception.InvalidError, match="64 bytes"):
            q.put(1, partition="k" * 65)


def test_partition_ttl_expires(server):
    with modal.Queue.ephemeral() as q:
        q.put("short", partition="ttl", partition_ttl=1)
        q.put("stays")
        assert q.len(partition="ttl") == 1
        threading.Event().wait(1.2)
        assert q.len(partition="ttl") == 0 and q.get(block=False) == "stays"


def test_async_and_iterate_with_poll_timeout(server):
    async def main(q):
        await q.put.aio("a")
        await q.put_many.aio(["b", "c"])
        seen = [v async for v in q.iterate.aio(item_poll_timeout=0.2)]
        return seen, await q.get_many.aio(3)

    with modal.Queue.ephemeral() as q:
        assert asyncio.run(main(q)) == (["a", "b", "c"], ["a", "b", "c"])


def test_producer_and_consumer_container(server):
    q = modal.Queue.from_name("t-queue-work", create_if_missing=True)
    q.clear(all=True)
    with objects.app.run(show_logs=False):
        call = objects.consume.spawn(q, 3)
        q.put_many(["x", "y", "z"])
        assert call.get(timeout=90) == ["x", "y", "z"]


def test_other_workspace_cannot_see_it(server):
    q = modal.Queue.from_name("t-queue-private", create_if_missing=True)
    q.put("mine")
    env = other_workspace_env(server)
    out = run_python(env, (
        "import firebox as m\n"
        f"mine = m.Queue(None, object_id={q.object_id!r})\n"
        "for q in (m.Queue.from_name('t-queue-private'), mine):\n"
        "    try:\n        q.get(block=False)\n    except m.exception.NotFoundError:\n"
        "        print('denied')\n"
    ))
    assert out.stdout.split() == ["denied", "denied"], out.stderr
    listed = run_cli(env, "queue", "list")
    assert listed.returncode == 0 and "t-queue-private" not in listed.stdout
    assert "t-queue-private" in server.cli("queue", "list").stdout
    assert q.len() == 1


def test_durable_across_a_restart(own_server, monkeypatch):
    monkeypatch.setenv("FIREBOX_SERVER_URL", own_server.url)
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    q = modal.Queue.from_name("t-queue-durable", create_if_missing=True)
    q.put_many([1, 2])
    q.put("p", partition="part")
    own_server.kill()
    own_server.start()
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    q2 = modal.Queue.from_name("t-queue-durable")
    assert q2.get_many(5) == [1, 2] and q2.get(partition="part") == "p"
