"""The Secret API: named or anonymous sets of environment variables, encrypted at rest. Values
go in and reach containers; they never come back out through the API."""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...store import schema as s
from ...wire import ids
from ..core.errors import invalid, not_found
from ..core.objects import already_exists, check_name
from . import requests as rq
from .apps import identity, json_body, plane

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SECRET_BYTES = 64 * 1024
S = s.secrets


def check_env(env: Any) -> dict[str, str]:
    if not isinstance(env, dict):
        raise invalid("A secret's contents must be a mapping of names to strings.")
    for k, v in env.items():
        if not isinstance(k, str) or not ENV_NAME.match(k):
            raise invalid(f"'{k}' is not a valid environment variable name.")
        if not isinstance(v, str):
            raise invalid(f"The value of '{k}' must be a string, not {type(v).__name__}.")
    if sum(len(k) + len(v) for k, v in env.items()) > MAX_SECRET_BYTES:
        raise invalid("A secret holds at most 64 KiB; store large data in a Volume.")
    return env


async def create(request: Request) -> JSONResponse:
    """Store a secret: named (exists → AlreadyExistsError unless overwrite) or anonymous."""
    body = await json_body(request, rq.CreateSecret)
    cp, who = plane(request), identity(request)
    env = check_env(body.env)
    name = body.name
    if name is not None:
        check_name("secret", name)
    overwrite = body.overwrite
    data = cp.vault.encrypt(env)
    new_id = ids.new_secret_id()
    now = time.time()

    async def op(conn: AsyncConnection) -> str:
        if name is not None:
            found = (await conn.execute(
                sa.select(S.c.id).where(S.c.workspace_id == who.workspace_id, S.c.name == name)
            )).first()
            if found is not None:
                if not overwrite:
                    raise already_exists(
                        f"A secret named '{name}' exists already; pass --force to replace it."
                    )
                await conn.execute(S.update().where(S.c.id == found[0])
                                   .values(data=data, updated_at=now))
                return str(found[0])
        await conn.execute(S.insert().values(
            id=new_id, workspace_id=who.workspace_id, name=name, data=data, created_at=now,
            updated_at=now,
        ))
        return new_id

    secret_id = await cp.db.write(op)
    cp.vault.remember(secret_id, who.workspace_id, env)
    return JSONResponse({"id": secret_id, "keys": sorted(env)})


async def lookup(request: Request) -> JSONResponse:
    """A named secret's id and key names; checks that required keys are there."""
    cp, who = plane(request), identity(request)
    name = request.path_params["name"]
    rows = await cp.db.read(
        sa.select(S).where(S.c.workspace_id == who.workspace_id, S.c.name == name)
    )
    if not rows:
        raise not_found(
            f"No secret named '{name}' in this workspace; create it with "
            f"`firebox secret create {name} KEY=VALUE ...`."
        )
    keys = sorted(cp.vault.decrypt(rows[0].data))
    required = request.query_params.getlist("required_key")
    missing = [k for k in required if k not in keys]
    if missing:
        raise not_found(
            f"Secret '{name}' is missing the required keys {', '.join(missing)}; add them with "
            f"`firebox secret create {name} ... --force`."
        )
    return JSONResponse({"id": rows[0].id, "name": name, "keys": keys})


async def list_secrets(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    rows = await cp.db.read(
        sa.select(S).where(S.c.workspace_id == who.workspace_id, S.c.name.is_not(None))
        .order_by(S.c.name)
    )
    return JSONResponse({"secrets": [
        {"id": r.id, "name": r.name, "created_at": r.created_at, "updated_at": r.updated_at,
         "keys": sorted(cp.vault.decrypt(r.data))}
        for r in rows
    ]})


async def delete(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    name = request.path_params["name"]
    rows = await cp.db.read(
        sa.select(S.c.id).where(S.c.workspace_id == who.workspace_id, S.c.name == name)
    )
    if not rows:
        raise not_found(f"No secret named '{name}' in this workspace.")
    secret_id = rows[0][0]
    await cp.db.write(lambda conn: conn.execute(sa.delete(S).where(S.c.id == secret_id)))
    cp.vault.forget(secret_id)
    return JSONResponse({"id": secret_id})


routes = [
    Route("/v1/secrets", create, methods=["POST"]),
    Route("/v1/secrets", list_secrets, methods=["GET"]),
    Route("/v1/secrets/{name}", lookup, methods=["GET"]),
    Route("/v1/secrets/{name}", delete, methods=["DELETE"]),
]
