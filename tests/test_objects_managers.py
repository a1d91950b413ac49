"""Modal's `X.objects` managers: create, list (newest first, max_objects, created_before) and
delete named Volumes, Dicts, Queues and Secrets against a real server."""

from __future__ import annotations

import asyncio
import datetime

import pytest

import firebox
from firebox.exception import AlreadyExistsError, InvalidError, NotFoundError


@pytest.mark.parametrize("kind", [firebox.Volume, firebox.Dict, firebox.Queue])
def test_objects_create_list_and_delete(server, kind):
    prefix = f"test-objects-mgr-{kind.__name__.lower()}"
    for i in range(3):
        kind.objects.create(f"{prefix}-{i}")
    with pytest.raises(AlreadyExistsError, match="allow_existing=True"):
        kind.objects.create(f"{prefix}-0")
    kind.objects.create(f"{prefix}-0", allow_existing=True)

    mine = [o for o in kind.objects.list() if o.name.startswith(prefix)]
    assert [o.name for o in mine] == [f"{prefix}-2", f"{prefix}-1", f"{prefix}-0"]
    assert all(isinstance(o, kind) and o.object_id for o in mine)
    assert len(kind.objects.list(max_objects=1)) == 1
    assert not [o for o in kind.objects.list(created_before="2000-01-01")
                if o.name.startswith(prefix)]
    with pytest.raises(InvalidError, match="max_objects"):
        kind.objects.list(max_objects=-1)

    kind.objects.delete(f"{prefix}-1")
    with pytest.raises(NotFoundError):
        kind.objects.delete(f"{prefix}-1")
    kind.objects.delete(f"{prefix}-1", allow_missing=True)
    left = [o.name for o in kind.objects.list() if o.name.startswith(prefix)]
    assert left == [f"{prefix}-2", f"{prefix}-0"]


def test_the_handles_listed_work(server):
    firebox.Dict.objects.create("test-objects-mgr-handle")
    d = next(o for o in firebox.Dict.objects.list() if o.name == "test-objects-mgr-handle")
    d["k"] = "v"
    assert firebox.Dict.from_name("test-objects-mgr-handle")["k"] == "v"


def test_secret_objects_and_their_aio_forms(server):
    asyncio.run(firebox.Secret.objects.create.aio("test-objects-mgr-secret", {"TOKEN": "t1"}))
    with pytest.raises(AlreadyExistsError):
        firebox.Secret.objects.create("test-objects-mgr-secret", {"TOKEN": "t2"})
    firebox.Secret.objects.create("test-objects-mgr-secret", {"TOKEN": "t2"},
                                  allow_existing=True)  # kept as it was
    listed = asyncio.run(firebox.Secret.objects.list.aio(
        created_before=datetime.datetime.now() + datetime.timedelta(minutes=1)))
    assert "test-objects-mgr-secret" in [s.name for s in listed]
    with pytest.raises(InvalidError, match="str keys and str values"):
        firebox.Secret.objects.create("test-objects-mgr-bad", {"N": 1})
    firebox.Secret.objects.delete("test-objects-mgr-secret")
    firebox.Secret.objects.delete("test-objects-mgr-secret", allow_missing=True)
    assert "test-objects-mgr-secret" not in [s.name for s in firebox.Secret.objects.list()]
