"""Workspaces and tokens: every API route needs a bearer token that names a workspace."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from ...store import schema as s
from ...store.db import Database
from ..core.errors import error_response

PUBLIC_PATHS = {"/health"}
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
    ws_id = f"ws-{secrets.token_hex(8)}"

    async def op(conn: Any) -> None:
        await conn.execute(
            db.insert_ignore(s.workspaces).values(id=ws_id, name=name, created_at=time.time())
        )

    await db.write(op)
    rows = await db.read(sa.select(s.workspaces.c.id).where(s.workspaces.c.name == name))
    return str(rows[0][0])


async def create_token(db: Database, workspace_id: str, kind: str = USER) -> str:
    token = f"fb-{secrets.token_urlsafe(32)}"

    async def op(conn: Any) -> None:
        await conn.execute(
            s.tokens.insert().values(
                id=f"tk-{secrets.token_hex(8)}",
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


class TokenAuth:
    """ASGI middleware: resolves the bearer token to an Identity in scope["identity"]."""

    def __init__(self, app: ASGIApp, db: Database, container_identity: Any) -> None:
        self.app = app
        self.db = db
        self.container_identity = container_identity
        self.cache: dict[str, Identity] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        identity = await self.identify(token) if token else None
        if identity is None:
            message = (
                "No token was given; set FIREBOX_TOKEN or run `firebox server` once to write "
                "~/.firebox/config.toml."
                if not token
                else "The token was refused; check FIREBOX_TOKEN or ~/.firebox/config.toml "
                "against the server you are talking to."
            )
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
                return
            await error_response(401, "AuthError", message)(scope, receive, send)
            return
        scope["identity"] = identity
        await self.app(scope, receive, send)

    async def identify(self, token: str) -> Identity | None:
        if token.startswith("ct-"):
            return self.container_identity(token)
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        identity = await token_identity(self.db, token)
        if identity is not None:
            self.cache[token] = identity
        return identity


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    return None
