"""Dicts: the mapping verbs, atomic put, limits, durability, workspaces and use in containers."""

import subprocess
import sys
import threading

import pytest
from apps import objects
from other_workspace import other_workspace_env

import firebox as modal


def test_mapping_verbs(server):
    d = modal.Dict.from_name("t-dict-verbs", create_if_missing=True)
    d.clear()
    d["a"] = 1
    d[("tuple", 2)] = {"nested": [1, 2]}
    assert d["a"] == 1 and d[("tuple", 2)] == {"nested": [1, 2]}
    assert d.get("missing") is None and d.get("missing", 7) == 7
    with pytest.raises(KeyError):
        d["missing"]
    assert "a" in d and "missing" not in d and d.contains("a")
    d.update({"b": 2}, c=3)
    assert d.len() == 4
    assert sorted(k for k in d.keys() if isinstance(k, str)) == ["a", "b", "c"]
    assert sorted(v for v in d.values() if isinstance(v, int)) == [1, 2, 3]
    assert dict(d.items())["c"] == 3
    assert d.pop("b") == 2 and d.pop("b", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("b")
    del d["c"]
    assert d.len() == 2
    d.clear()
    assert d.len() == 0


def test_put_skip_if_exists_is_atomic(server):
    d = modal.Dict.from_name("t-dict-lock", create_if_missing=True)
    d.clear()
    wins = []

    def grab(i):
        if d.put("lock", i, skip_if_exists=True):
            wins.append(i)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and d["lock"] == wins[0]
    assert d.put("lock", "new") is True and d["lock"] == "new"


def test_from_name_missing_and_ephemeral(server):
    with pytest.raises(modal.exception.NotFoundError):
        modal.Dict.from_name("t-dict-never-made").get("x")
    with modal.Dict.ephemeral() as d:
        d["k"] = "v"
        assert d["k"] == "v"
        object_id = d.object_id
    with pytest.raises(modal.exception.NotFoundError):
        modal.Dict(None, object_id=object_id).len()


def test_async_forms(server):
    import asyncio

    async def main():
        d = modal.Dict.from_name("t-dict-aio", create_if_missing=True)
        await d.put.aio("x", 41)
        return await d.get.aio("x") + 1

    assert asyncio.run(main()) == 42


def test_used_inside_a_container(server):
    d = modal.Dict.from_name("t-dict-container", create_if_missing=True)
    d["from-caller"] = 10
    with modal.Queue.ephemeral() as q:
        with objects.app.run(show_logs=False):
            assert objects.dict_and_queue.remote(d, q) == "hello"
    assert d["from-container"] == 11


def test_other_workspace_cannot_see_it(server):
    d = modal.Dict.from_name("t-dict-private", create_if_missing=True)
    d["secret"] = 1
    code = (
        "import firebox as m, sys\n"
        "d = m.Dict.from_name('t-dict-private')\n"
        "try:\n    d.get('secret')\nexcept m.exception.NotFoundError:\n    print('denied')\n"
        f"mine = m.Dict(None, object_id={d.object_id!r})\n"
        "try:\n    mine.get('secret')\nexcept m.exception.NotFoundError:\n    print('denied')\n"
    )
    env = other_workspace_env(server)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["denied", "denied"], out.stderr
    listed = subprocess.run([sys.executable, "-m", "firebox.cli.main", "dict", "list"], env=env,
                            capture_output=True, text=True)
    assert "t-dict-private" not in listed.stdout and listed.returncode == 0, listed.stderr


def test_durable_across_a_restart(own_server, monkeypatch):
    monkeypatch.setenv("FIREBOX_SERVER_URL", own_server.url)
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    d = modal.Dict.from_name("t-dict-durable", create_if_missing=True)
    d.update({"a": 1, "b": [2]})
    own_server.kill()
    own_server.start()
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    d2 = modal.Dict.from_name("t-dict-durable")
    assert d2["a"] == 1 and d2["b"] == [2] and d2.len() == 2
