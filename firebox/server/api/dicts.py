"""The Dict API: a durable key-value map per Dict, keys and values cloudpickled by the client."""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...store import schema as s
from ...wire import ids
from ..core.objects import Objects
from . import requests as rq
from .apps import msgpack_body, packed
from .objects import ObjectRoutes, counted

E = s.dict_entries
DICTS = ObjectRoutes(Objects("dict", ids.DICT, s.dicts, [E.c.dict_id]), "dicts",
                     counted(E.c.dict_id), {"len": 0})
ENTRY_PAGE = 1000


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


async def get(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    h = key_hash(body.key)
    rows = await cp.db.read(sa.select(E.c.value).where(E.c.dict_id == dict_id, E.c.key_hash == h))
    return packed({"found": bool(rows), "value": rows[0][0] if rows else None})


async def contains(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    h = key_hash(body.key)
    rows = await cp.db.read(
        sa.select(E.c.key_hash).where(E.c.dict_id == dict_id, E.c.key_hash == h)
    )
    return packed({"found": bool(rows)})


async def put(request: Request) -> Response:
    """Write entries; with skip_if_exists, only when the key is absent, decided atomically."""
    body = await msgpack_body(request, rq.DictPut)
    cp, dict_id = await DICTS.target(request)
    items, skip = body.items, body.skip_if_exists
    now = time.time()

    async def op(conn: AsyncConnection) -> bool:
        # The group-commit writer runs one op at a time, so check-then-write is atomic.
        written = False
        for key, value in items:
            h = key_hash(key)
            where = (E.c.dict_id == dict_id) & (E.c.key_hash == h)
            exists = (await conn.execute(sa.select(E.c.key_hash).where(where))).first()
            if exists is not None:
                if skip:
                    continue
                await conn.execute(E.update().where(where).values(value=value, updated_at=now))
            else:
                await conn.execute(E.insert().values(
                    dict_id=dict_id, key_hash=h, key=key, value=value, updated_at=now
                ))
            written = True
        return written

    return packed({"written": await cp.db.write(op)})


async def pop(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    where = (E.c.dict_id == dict_id) & (E.c.key_hash == key_hash(body.key))

    async def op(conn: AsyncConnection) -> bytes | None:
        row = (await conn.execute(sa.select(E.c.value).where(where))).first()
        if row is None:
            return None
        await conn.execute(sa.delete(E).where(where))
        return bytes(row[0])

    value = await cp.db.write(op)
    return packed({"found": value is not None, "value": value})


async def length(request: Request) -> Response:
    cp, dict_id = await DICTS.target(request)
    rows = await cp.db.read(sa.select(sa.func.count()).where(E.c.dict_id == dict_id))
    return packed({"len": int(rows[0][0])})


async def clear(request: Request) -> Response:
    cp, dict_id = await DICTS.target(request)
    await cp.db.write(lambda conn: conn.execute(sa.delete(E).where(E.c.dict_id == dict_id)))
    return packed({})


async def entries(request: Request) -> Response:
    """A page of entries in key-hash order: keys, values or both."""
    body = await msgpack_body(request, rq.DictEntries)
    cp, dict_id = await DICTS.target(request)
    after = body.after
    rows = await cp.db.read(
        sa.select(E.c.key_hash, E.c.key, E.c.value)
        .where(E.c.dict_id == dict_id, E.c.key_hash > after)
        .order_by(E.c.key_hash).limit(ENTRY_PAGE)
    )
    return packed({
        "entries": [[r.key_hash, r.key, r.value] for r in rows],
        "more": len(rows) == ENTRY_PAGE,
    })


routes = [
    *DICTS.routes(),
    Route("/v1/dicts/{ref}/get", get, methods=["POST"]),
    Route("/v1/dicts/{ref}/contains", contains, methods=["POST"]),
    Route("/v1/dicts/{ref}/put", put, methods=["POST"]),
    Route("/v1/dicts/{ref}/pop", pop, methods=["POST"]),
    Route("/v1/dicts/{ref}/len", length, methods=["POST"]),
    Route("/v1/dicts/{ref}/clear", clear, methods=["POST"]),
    Route("/v1/dicts/{ref}/entries", entries, methods=["POST"]),
]
