"""Dicts: a durable key-value map per Dict, keys and values cloudpickled by the client, each
entry found by its key's hash."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...wire import ids
from .objects import Objects, counted

if TYPE_CHECKING:
    from .plane import ControlPlane

E = s.dict_entries
DICTS = Objects("dict", ids.DICT, s.dicts, [E.c.dict_id], counted(E.c.dict_id), {"len": 0})
ENTRY_PAGE = 1000


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


async def get(cp: ControlPlane, dict_id: str, key: bytes) -> tuple[bool, bytes | None]:
    """Whether key is in the Dict, and its value."""
    rows = await cp.db.read(
        sa.select(E.c.value).where(E.c.dict_id == dict_id, E.c.key_hash == key_hash(key))
    )
    return bool(rows), rows[0][0] if rows else None


async def contains(cp: ControlPlane, dict_id: str, key: bytes) -> bool:
    rows = await cp.db.read(
        sa.select(E.c.key_hash).where(E.c.dict_id == dict_id, E.c.key_hash == key_hash(key))
    )
    return bool(rows)


async def put(cp: ControlPlane, dict_id: str, items: list[tuple[bytes, bytes]],
              skip_if_exists: bool) -> bool:
    """Write entries; with skip_if_exists, only when the key is absent, decided atomically.
    Whether any was written."""
    now = time.time()

    async def op(conn: AsyncConnection) -> bool:
        # The group-commit writer runs one op at a time, so check-then-write is atomic.
        written = False
        for key, value in items:
            h = key_hash(key)
            where = (E.c.dict_id == dict_id) & (E.c.key_hash == h)
            exists = (await conn.execute(sa.select(E.c.key_hash).where(where))).first()
            if exists is not None:
                if skip_if_exists:
                    continue
                await conn.execute(E.update().where(where).values(value=value, updated_at=now))
            else:
                await conn.execute(E.insert().values(
                    dict_id=dict_id, key_hash=h, key=key, value=value, updated_at=now
                ))
            written = True
        return written

    written: bool = await cp.db.write(op)
    return written


async def pop(cp: ControlPlane, dict_id: str, key: bytes) -> bytes | None:
    """Take key's value out of the Dict; None when it was not there."""
    where = (E.c.dict_id == dict_id) & (E.c.key_hash == key_hash(key))

    async def op(conn: AsyncConnection) -> bytes | None:
        row = (await conn.execute(sa.select(E.c.value).where(where))).first()
        if row is None:
            return None
        await conn.execute(sa.delete(E).where(where))
        return bytes(row[0])

    value: bytes | None = await cp.db.write(op)
    return value


async def length(cp: ControlPlane, dict_id: str) -> int:
    rows = await cp.db.read(sa.select(sa.func.count()).where(E.c.dict_id == dict_id))
    return int(rows[0][0])


async def clear(cp: ControlPlane, dict_id: str) -> None:
    await cp.db.write(lambda conn: conn.execute(sa.delete(E).where(E.c.dict_id == dict_id)))


async def entries(cp: ControlPlane, dict_id: str, after: str) -> tuple[list[list[Any]], bool]:
    """A page of [key hash, key, value] after the key hash `after`, in key-hash order, and
    whether more may follow."""
    rows = await cp.db.read(
        sa.select(E.c.key_hash, E.c.key, E.c.value)
        .where(E.c.dict_id == dict_id, E.c.key_hash > after)
        .order_by(E.c.key_hash).limit(ENTRY_PAGE)
    )
    return [[r.key_hash, r.key, r.value] for r in rows], len(rows) == ENTRY_PAGE
