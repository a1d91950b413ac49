"""A workspace's sandboxes as clients find and read them: their records (one by id, the running
ones by app and tags, one by name), waiting for one to end, its tags, its tunnels, snapshots kept
as sandbox images; and the running ones and their commands, each only to its own workspace."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from ...wire import ids
from .errors import not_found
from .sandboxes import Exec, Sandbox
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane


def _info(row: Any) -> dict[str, Any]:
    return {"id": row.id, "app_id": row.app_id, "name": row.name, "tags": json.loads(row.tags),
            "isolation": row.isolation, "status": row.status, "returncode": row.returncode,
            "created_at": row.created_at, "finished_at": row.finished_at}


async def _row(cp: ControlPlane, who: Identity, sandbox_id: str) -> Any:
    rows = await cp.db.read(sa.select(s.sandboxes).where(
        s.sandboxes.c.id == sandbox_id, s.sandboxes.c.workspace_id == who.workspace_id))
    if not rows:
        raise not_found(f"No sandbox {sandbox_id} in this workspace.")
    return rows[0]


async def describe(cp: ControlPlane, who: Identity, sandbox_id: str) -> dict[str, Any]:
    """One of the workspace's sandboxes, running or ended."""
    return _info(await _row(cp, who, sandbox_id))


def running(cp: ControlPlane, who: Identity, sandbox_id: str) -> Sandbox:
    """One of the workspace's sandboxes that is running here."""
    sb = cp.sandboxes.running.get(sandbox_id)
    if sb is None or sb.workspace_id != who.workspace_id:
        raise not_found(f"No sandbox {sandbox_id} is running here; "
                        "Sandbox.list() shows the running ones.")
    return sb


def command(cp: ControlPlane, who: Identity, sandbox_id: str, exec_id: str
            ) -> tuple[Sandbox, Exec]:
    """A command of one of the workspace's running sandboxes, with its sandbox."""
    sb = running(cp, who, sandbox_id)
    e = sb.execs.get(exec_id)
    if e is None:
        raise not_found(f"No command {exec_id} in sandbox {sb.id}.")
    return sb, e


def send_stdin(cp: ControlPlane, who: Identity, sandbox_id: str, exec_id: str, data: bytes,
               eof: bool) -> None:
    """Input for a command of a running sandbox; dropped once the command has ended."""
    sb, e = command(cp, who, sandbox_id, exec_id)
    if e.code is None:
        cp.sandboxes.stdin(sb, e.id, data, eof)


def resize(cp: ControlPlane, who: Identity, sandbox_id: str, exec_id: str,
           size: list[int]) -> None:
    """A running command's terminal has a new (rows, columns)."""
    sb, e = command(cp, who, sandbox_id, exec_id)
    if e.code is None:
        cp.sandboxes.resize(sb, e.id, size)


async def wait(cp: ControlPlane, who: Identity, sandbox_id: str, limit: float
               ) -> dict[str, Any]:
    """The sandbox once it has ended, or as it is after `limit` seconds."""
    row = await _row(cp, who, sandbox_id)
    sb = cp.sandboxes.running.get(sandbox_id)
    if row.status == "running" and sb is not None:
        try:
            await asyncio.wait_for(sb.done.wait(), limit)
        except asyncio.TimeoutError:
            pass
        row = await _row(cp, who, sandbox_id)
    return _info(row)


async def running_in(cp: ControlPlane, who: Identity, app_id: str | None,
                     tags: dict[str, str]) -> list[dict[str, Any]]:
    """The running sandboxes of the caller's environment (its apps'), oldest first: of one app
    if app_id, and only those with all of the tags given."""
    apps_here = sa.select(s.apps.c.id).where(s.apps.c.workspace_id == who.workspace_id,
                                             s.apps.c.environment == who.environment)
    q = sa.select(s.sandboxes).where(s.sandboxes.c.workspace_id == who.workspace_id,
                                     s.sandboxes.c.app_id.in_(apps_here),
                                     s.sandboxes.c.status == "running")
    if app_id:
        q = q.where(s.sandboxes.c.app_id == app_id)
    found = [_info(r) for r in await cp.db.read(q.order_by(s.sandboxes.c.created_at))]
    return [i for i in found if all(i["tags"].get(k) == v for k, v in tags.items())]


async def named(cp: ControlPlane, app: Any, name: str) -> dict[str, Any]:
    """The running sandbox of that name in the app (a row of apps)."""
    rows = await cp.db.read(sa.select(s.sandboxes).where(
        s.sandboxes.c.app_id == app.id, s.sandboxes.c.name == name,
        s.sandboxes.c.status == "running"))
    if not rows:
        raise not_found(f"No running sandbox named '{name}' in app '{app.name or app.id}'.")
    return _info(rows[0])


async def terminate(cp: ControlPlane, who: Identity, sandbox_id: str) -> dict[str, Any]:
    """End one of the workspace's sandboxes if it runs; the sandbox as it is then."""
    await _row(cp, who, sandbox_id)
    sb = cp.sandboxes.running.get(sandbox_id)
    if sb is not None:
        await cp.sandboxes.terminate(sb, "terminated")
    return await describe(cp, who, sandbox_id)


async def set_tags(cp: ControlPlane, who: Identity, sandbox_id: str,
                   tags: dict[str, str]) -> None:
    await _row(cp, who, sandbox_id)
    text = json.dumps(tags)
    await cp.db.write(lambda conn: conn.execute(
        s.sandboxes.update().where(s.sandboxes.c.id == sandbox_id).values(tags=text)))


def tunnels(cp: ControlPlane, sb: Sandbox) -> list[dict[str, Any]]:
    """Where clients reach the sandbox's tunnelled ports, by port."""
    found = cp.sandboxes.tunnels.endpoints(sb.id)
    return [{"container_port": port, **end.to_json()} for port, end in sorted(found.items())]


async def snapshot(cp: ControlPlane, who: Identity, sb: Sandbox) -> str:
    """Keep the sandbox's files as a sandbox image of the workspace; the image's id."""
    layers = await cp.sandboxes.snapshot(sb)
    image_id = ids.snapshot_image_id(layers[0])
    now = time.time()
    await cp.db.write(lambda conn: conn.execute(s.sandbox_images.insert().values(
        id=image_id, workspace_id=who.workspace_id, layers=json.dumps(layers), created_at=now)))
    return image_id
