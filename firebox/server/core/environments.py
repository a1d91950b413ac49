"""A workspace's environments: named namespaces of its apps and named objects. Every workspace has
"main" without a row; the others are made, listed, renamed and deleted here, and a request's
environment is checked to be one of the workspace's before anything is looked up in it."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...store.db import Database
from . import secrets
from .dicts import DICTS
from .errors import ApiError, invalid, not_found
from .objects import already_exists, check_name
from .queues import QUEUES
from .volumes import VOLUMES
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane

MAIN = "main"
OBJECTS = (DICTS, QUEUES, VOLUMES)  # the kinds of named objects with a table of their own
NAMED_TABLES = (s.dicts, s.queues, s.secrets, s.volumes)


def unknown(name: str) -> ApiError:
    return not_found(f"No environment '{name}' in this workspace; create it with `firebox "
                     f"environment create {name}`.")


async def exists(db: Database, workspace_id: str, name: str) -> bool:
    if name == MAIN:
        return True
    t = s.environments
    rows = await db.read(sa.select(t.c.name).where(t.c.workspace_id == workspace_id,
                                                   t.c.name == name))
    return bool(rows)


async def in_environment(db: Database, who: Identity, name: str | None) -> Identity:
    """who, in the environment a request names (None: who's own, "main" or a container's app's);
    NotFoundError for one the workspace does not have."""
    if not name or name == who.environment:
        return who
    if not await exists(db, who.workspace_id, name):
        raise unknown(name)
    return dataclasses.replace(who, environment=name)


def _by_user(who: Identity) -> None:
    if who.kind == "container":
        raise ApiError(403, "AuthError", "Only a user token can manage environments; a "
                                         "container's token cannot.")


async def create(cp: ControlPlane, who: Identity, name: str) -> None:
    _by_user(who)
    check_name("environment", name)
    if await exists(cp.db, who.workspace_id, name):
        raise already_exists(f"The environment '{name}' exists already.")
    row = {"workspace_id": who.workspace_id, "name": name, "created_at": time.time()}
    await cp.db.write(lambda conn: conn.execute(
        cp.db.insert_ignore(s.environments).values(**row)))


async def _holdings(cp: ControlPlane, workspace_id: str) -> dict[str, tuple[int, int]]:
    """Per environment: its apps that are not stopped, and its named objects."""
    apps = await cp.db.read(
        sa.select(s.apps.c.environment, sa.func.count())
        .where(s.apps.c.workspace_id == workspace_id, s.apps.c.state != "stopped")
        .group_by(s.apps.c.environment))
    held = {r[0]: [r[1], 0] for r in apps}
    for t in NAMED_TABLES:
        rows = await cp.db.read(
            sa.select(t.c.environment, sa.func.count())
            .where(t.c.workspace_id == workspace_id, t.c.name.is_not(None))
            .group_by(t.c.environment))
        for env, count in rows:
            held.setdefault(env, [0, 0])[1] += count
    return {env: (counts[0], counts[1]) for env, counts in held.items()}


async def listing(cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    """main first, then the others by name, each with how many apps and objects it holds."""
    t = s.environments
    rows = await cp.db.read(sa.select(t).where(t.c.workspace_id == who.workspace_id)
                            .order_by(t.c.name))
    made = await cp.db.read(sa.select(s.workspaces.c.created_at)
                            .where(s.workspaces.c.id == who.workspace_id))
    held = await _holdings(cp, who.workspace_id)
    found = [(MAIN, made[0][0] if made else None), *((r.name, r.created_at) for r in rows)]
    return [{"name": name, "created_at": created, "apps": held.get(name, (0, 0))[0],
             "objects": held.get(name, (0, 0))[1]}
            for name, created in found]


async def delete(cp: ControlPlane, who: Identity, name: str, force: bool) -> dict[str, int]:
    """Delete an environment; one that holds apps or named objects only with force, and then
    its apps are stopped and its objects deleted. How many of each went."""
    _by_user(who)
    if name == MAIN:
        raise invalid("The environment 'main' is the workspace's default and cannot be deleted.")
    if not await exists(cp.db, who.workspace_id, name):
        raise unknown(name)
    apps, objects = (await _holdings(cp, who.workspace_id)).get(name, (0, 0))
    if (apps or objects) and not force:
        raise ApiError(409, "InvalidError", (
            f"The environment '{name}' holds {apps} app(s) and {objects} object(s); stop and "
            "delete them first, or pass --yes to delete it with them."))
    there = dataclasses.replace(who, environment=name)
    live = await cp.db.read(sa.select(s.apps.c.id).where(
        s.apps.c.workspace_id == who.workspace_id, s.apps.c.environment == name,
        s.apps.c.state != "stopped"))
    for (app_id,) in live:
        await cp.stop_app(app_id, f"its environment '{name}' was deleted")
    for kind in OBJECTS:
        for entry in await kind.listing(cp, there):
            await kind.delete(cp, there, entry["id"])
    for entry in await secrets.named(cp, there):
        await secrets.delete(cp, there, entry["name"])

    async def op(conn: AsyncConnection) -> None:
        await conn.execute(sa.delete(s.environments).where(
            s.environments.c.workspace_id == who.workspace_id, s.environments.c.name == name))

    await cp.db.write(op)
    return {"apps": apps, "objects": objects}


async def rename(cp: ControlPlane, who: Identity, name: str, new_name: str) -> None:
    """Rename an environment with everything in it: its apps keep running (in new containers),
    and their web functions move to the URLs of the new name."""
    _by_user(who)
    if MAIN in (name, new_name):
        raise invalid("The environment 'main' is the workspace's default; it cannot be renamed, "
                      "nor another take its name.")
    check_name("environment", new_name)
    if not await exists(cp.db, who.workspace_id, name):
        raise unknown(name)
    if await exists(cp.db, who.workspace_id, new_name):
        raise already_exists(f"The environment '{new_name}' exists already.")
    ws = who.workspace_id

    async def op(conn: AsyncConnection) -> None:
        await conn.execute(s.environments.update().where(
            s.environments.c.workspace_id == ws, s.environments.c.name == name
        ).values(name=new_name))
        for t in (s.apps, *NAMED_TABLES):
            await conn.execute(t.update().where(t.c.workspace_id == ws, t.c.environment == name)
                               .values(environment=new_name))

    await cp.db.write(op)
    moved = [fn for fn in cp.scheduler.functions.values()
             if fn.workspace_id == ws and fn.environment == name]
    for fn in moved:  # what the scheduler holds (and its containers' identities) follows
        fn.environment = new_name
    routed = cp.web_endpoints.unpublish({fn.id for fn in moved})
    live = await cp.db.read(
        sa.select(s.functions.c.id, s.apps.c.name, s.apps.c.state)
        .join(s.apps, s.apps.c.id == s.functions.c.app_id)
        .where(s.functions.c.id.in_({fn.id for fn in moved}), s.functions.c.parent_id.is_(None),
               s.apps.c.state != "stopped"))
    for row in live:
        # As a deploy does: new containers, which see the new name; the old ones finish what
        # they hold.
        await cp.replace_function(row.id)
        fn = await cp.load_function(row.id)
        if fn is not None and row.id in routed:
            await cp.web_endpoints.publish(fn, row.name, row.state == "deployed")
