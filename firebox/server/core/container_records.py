"""The workspace's containers as clients see them: the running ones, stopping one, and the app
whose output one printed; a caller sees and touches only its own workspace's containers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from .errors import invalid, not_found
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane
    from .pools import Container


async def running(cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    """The running containers of the caller's environment, oldest first: id, app, function,
    state, started."""
    mine = [c for c in cp.scheduler.containers.values()
            if c.pool.function.workspace_id == who.workspace_id
            and c.pool.function.environment == who.environment]
    app_ids = {c.pool.function.app_id for c in mine}
    names: dict[str, str | None] = {}
    if app_ids:
        rows = await cp.db.read(sa.select(s.apps.c.id, s.apps.c.name)
                                .where(s.apps.c.id.in_(app_ids)))
        names = {r.id: r.name for r in rows}
    out = [{
        "container_id": c.id,
        "app_id": c.pool.function.app_id,
        "app": names.get(c.pool.function.app_id),
        "function": c.pool.function.name,
        "state": c.state,
        "started_at": c.started_at,
        "inputs": len(c.running),
    } for c in mine]
    return sorted(out, key=lambda e: (e["started_at"] or float("inf"), e["container_id"]))


def own(cp: ControlPlane, who: Identity, container_id: str) -> Container:
    """One of the caller's workspace's running containers; another's is not found."""
    c = cp.scheduler.containers.get(container_id)
    if c is None or c.pool.function.workspace_id != who.workspace_id:
        raise not_found(f"No running container '{container_id}' in this workspace; "
                        "`firebox container list` shows them.")
    return c


def stop(cp: ControlPlane, who: Identity, container_id: str) -> None:
    """Stop a running container: it gets its grace, then what it holds runs elsewhere."""
    if who.kind == "container":
        raise invalid("Only a user token can stop containers.")
    cp.scheduler.stop_container(own(cp, who, container_id), "it was stopped by request")


async def app_of(cp: ControlPlane, who: Identity, container_id: str) -> str:
    """The app of one of the workspace's containers, running or gone."""
    c = cp.scheduler.containers.get(container_id)
    if c is not None and c.pool.function.workspace_id == who.workspace_id:
        return c.pool.function.app_id  # its row may still wait for its commit
    rows = await cp.db.read(
        sa.select(s.containers.c.app_id).join(s.apps, s.apps.c.id == s.containers.c.app_id)
        .where(s.containers.c.id == container_id, s.apps.c.workspace_id == who.workspace_id))
    if not rows:
        raise not_found(f"No container '{container_id}' in this workspace; "
                        "`firebox container list` shows the running ones.")
    return str(rows[0].app_id)


def is_running(cp: ControlPlane, container_id: str) -> bool:
    return container_id in cp.scheduler.containers
