"""A workspace's Secrets: named or anonymous sets of environment variables, stored encrypted by
the vault. Values go in and reach containers; only their names ever come back out."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...wire import ids
from .errors import invalid, not_found
from .objects import already_exists, check_name, in_environment
from .objects import named as by_name
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane

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


async def create(cp: ControlPlane, who: Identity, env: Any, name: str | None,
                 overwrite: bool) -> tuple[str, list[str]]:
    """Store a secret: named (one that exists already is an AlreadyExistsError unless
    overwrite) or anonymous. Its id and its keys, sorted."""
    env = check_env(env)
    if name is not None:
        check_name("secret", name)
    data = cp.vault.encrypt(env)
    new_id = ids.new_secret_id()
    now = time.time()

    async def op(conn: AsyncConnection) -> str:
        if name is not None:
            found = (await conn.execute(
                sa.select(S.c.id).where(*by_name(S, who, name))
            )).first()
            if found is not None:
                if not overwrite:
                    raise already_exists(
                        f"A secret named '{name}' exists already{in_environment(who)}; pass "
                        "--force to replace it."
                    )
                await conn.execute(S.update().where(S.c.id == found[0])
                                   .values(data=data, updated_at=now))
                return str(found[0])
        await conn.execute(S.insert().values(
            id=new_id, workspace_id=who.workspace_id, environment=who.environment, name=name,
            data=data, created_at=now, updated_at=now,
        ))
        return new_id

    secret_id: str = await cp.db.write(op)
    cp.vault.remember(secret_id, who.workspace_id, env)
    return secret_id, sorted(env)


async def lookup(cp: ControlPlane, who: Identity, name: str, required: list[str]
                 ) -> dict[str, Any]:
    """A named secret's id and key names; NotFoundError when it lacks a required key."""
    rows = await cp.db.read(
        sa.select(S).where(*by_name(S, who, name))
    )
    if not rows:
        raise not_found(
            f"No secret named '{name}' in this workspace{in_environment(who)}; create it with "
            f"`firebox secret create {name} KEY=VALUE ...`."
        )
    keys = sorted(cp.vault.decrypt(rows[0].data))
    missing = [k for k in required if k not in keys]
    if missing:
        raise not_found(
            f"Secret '{name}' is missing the required keys {', '.join(missing)}; add them with "
            f"`firebox secret create {name} ... --force`."
        )
    return {"id": rows[0].id, "name": name, "keys": keys}


async def named(cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    """The workspace's named secrets by name, each with its key names."""
    rows = await cp.db.read(
        sa.select(S).where(S.c.workspace_id == who.workspace_id,
                           S.c.environment == who.environment, S.c.name.is_not(None))
        .order_by(S.c.name)
    )
    return [{"id": r.id, "name": r.name, "created_at": r.created_at, "updated_at": r.updated_at,
             "keys": sorted(cp.vault.decrypt(r.data))}
            for r in rows]


async def delete(cp: ControlPlane, who: Identity, name: str) -> str:
    """Delete a named secret; its id."""
    rows = await cp.db.read(
        sa.select(S.c.id).where(*by_name(S, who, name))
    )
    if not rows:
        raise not_found(f"No secret named '{name}' in this workspace{in_environment(who)}.")
    secret_id = str(rows[0][0])
    await cp.db.write(lambda conn: conn.execute(sa.delete(S).where(S.c.id == secret_id)))
    cp.vault.forget(secret_id)
    return secret_id
