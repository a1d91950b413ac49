"""Workspaces and their tokens: who a bearer token is, and what kind of token it is."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from ...wire import ids

USER, ADMIN = "user", "admin"  # kinds of tokens: an admin token is the operator's


@dataclass(frozen=True)
class Identity:
    workspace_id: str
    kind: str  # "user", "admin" or "container"
    container_id: str | None = None

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
