"""Workspaces and their tokens: who a bearer token is, what kind of token it is, and the
workspace's own settings (today, the isolation its containers get by default)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...backends import isolation
from ...store import schema as s
from ...store.db import Database
from ...wire import ids
from .errors import ApiError, invalid
from .isolation_floor import refusal

if TYPE_CHECKING:
    from .plane import ControlPlane

USER, ADMIN = "user", "admin"  # kinds of tokens: an admin token is the operator's


@dataclass(frozen=True)
class Identity:
    workspace_id: str
    kind: str  # "user", "admin" or "container"
    container_id: str | None = None
    # The environment of the workspace the request names (X-Firebox-Environment), or a
    # container's app's: the namespace its apps and named objects are found and made in.
    environment: str = "main"
    key: Any = None  # a model gateway key's ModelKey (core/model_keys.py): its scope and limits

    @property
    def operator(self) -> bool:
        """An admin token, made on the server's machine: it may lower isolation."""
        return self.kind == ADMIN


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def ensure_workspace(db: Database, name: str) -> str:
    rows = await db.read(sa.select(s.workspaces.c.id).where(s.workspaces.c.name == name))
    if rows:
        return str(rows[0][0])
    ws_id = ids.new_workspace_id()

    async def op(conn: Any) -> None:
        await conn.execute(
            db.insert_ignore(s.workspaces).values(id=ws_id, name=name, created_at=time.time())
        )

    await db.write(op)
    rows = await db.read(sa.select(s.workspaces.c.id).where(s.workspaces.c.name == name))
    return str(rows[0][0])


async def create_token(db: Database, workspace_id: str, kind: str = USER) -> str:
    token = ids.new_api_token()

    async def op(conn: Any) -> None:
        await conn.execute(
            s.tokens.insert().values(
                id=ids.new_token_id(),
                workspace_id=workspace_id,
                secret_hash=hash_token(token),
                kind=kind,
                created_at=time.time(),
            )
        )

    await db.write(op)
    return token


async def token_identity(db: Database, token: str) -> Identity | None:
    rows = await db.read(
        sa.select(s.tokens.c.workspace_id, s.tokens.c.kind)
        .where(s.tokens.c.secret_hash == hash_token(token))
    )
    if not rows or rows[0].kind not in (USER, ADMIN):
        return None
    return Identity(str(rows[0].workspace_id), str(rows[0].kind))


async def describe(cp: ControlPlane, who: Identity) -> dict[str, Any]:
    """The caller's workspace: its name, its default isolation and the server's."""
    rows = await cp.db.read(sa.select(s.workspaces).where(s.workspaces.c.id == who.workspace_id))
    return {
        "workspace_id": who.workspace_id,
        "name": rows[0].name,
        "isolation": rows[0].isolation,
        "server_isolation": cp.backend.isolation,
    }


async def token_info(cp: ControlPlane, who: Identity) -> dict[str, Any]:
    """What the caller's token is: its kind and the workspace it names."""
    rows = await cp.db.read(sa.select(s.workspaces.c.name)
                            .where(s.workspaces.c.id == who.workspace_id))
    return {"workspace_id": who.workspace_id, "workspace": rows[0].name, "kind": who.kind}


async def new_user_token(cp: ControlPlane, who: Identity) -> str:
    """A user token for the caller's own workspace. Admin tokens are made only on the server's
    machine (`firebox token create --admin`): no token can mint one through the API."""
    if who.kind not in (USER, ADMIN):
        raise ApiError(403, "AuthError", "Only a user token can make tokens; a container's "
                                         "token cannot.")
    return await create_token(cp.db, who.workspace_id, USER)


async def set_isolation(cp: ControlPlane, who: Identity, mode: str | None) -> None:
    """Set (or with None, clear) the isolation of the workspace's functions that do not choose
    one: a mode this host has, and below the server's only when an operator sets it."""
    if who.kind == "container":
        raise invalid("Only a user token can change the workspace's settings.")
    if mode is not None:
        try:
            mode = isolation.check_mode(mode)
        except isolation.IsolationUnavailable as exc:
            raise invalid(str(exc)) from None
        problem = None if who.operator else refusal(mode, cp.backend.isolation, "The workspace")
        if problem:
            raise ApiError(403, "AuthError", problem + ".")
    await cp.db.write(
        lambda conn: conn.execute(
            s.workspaces.update().where(s.workspaces.c.id == who.workspace_id)
            .values(isolation=mode)
        )
    )
    cp.scheduler.set_workspace_isolation(who.workspace_id, mode)
