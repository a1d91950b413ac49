"""Queues: durable FIFOs, one per partition of a Queue, with blocking gets and puts that sleep
on in-memory waiters (never polling the database) and partitions that expire."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...wire import ids
from .errors import invalid
from .objects import Objects, counted

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.queues")

MAX_PARTITION_ITEMS = 5000
MAX_ITEM_BYTES = 1024 * 1024
MAX_PARTITION_KEY_BYTES = 64
MAX_TTL = 7 * 86400
ITEM_PAGE = 1000
SWEEP_EVERY = 60.0
ITEMS, PARTS = s.queue_items, s.queue_partitions
T = TypeVar("T")


def items_key(queue_id: str) -> tuple[str, str]:
    return ("queue-items", queue_id)


def space_key(queue_id: str) -> tuple[str, str]:
    return ("queue-space", queue_id)


def _deleted(cp: ControlPlane, queue_id: str) -> None:
    cp.waiters.notify(items_key(queue_id))  # blocked callers wake and find it gone
    cp.waiters.notify(space_key(queue_id))


QUEUES = Objects("queue", ids.QUEUE, s.queues, [ITEMS.c.queue_id, PARTS.c.queue_id],
                 counted(ITEMS.c.queue_id), {"len": 0}, deleted=_deleted)


def check_partition(partition: str | None) -> str:
    """The partition's key; the default partition's is ""."""
    if partition is None:
        return ""
    if len(partition.encode()) > MAX_PARTITION_KEY_BYTES:
        raise invalid(
            f"The partition key is {len(partition.encode())} bytes; keys are at most "
            f"{MAX_PARTITION_KEY_BYTES} bytes."
        )
    return partition


async def expire(conn: AsyncConnection, queue_id: str | None, now: float) -> list[str]:
    """Drop partitions whose TTL passed (of one queue, or of all); returns the queue ids hit."""
    q = sa.select(PARTS.c.queue_id, PARTS.c.partition).where(PARTS.c.expires_at < now)
    if queue_id is not None:
        q = q.where(PARTS.c.queue_id == queue_id)
    gone = (await conn.execute(q)).all()
    for qid, partition in gone:
        await conn.execute(
            sa.delete(ITEMS).where(ITEMS.c.queue_id == qid, ITEMS.c.partition == partition)
        )
        await conn.execute(
            sa.delete(PARTS).where(PARTS.c.queue_id == qid, PARTS.c.partition == partition)
        )
    return sorted({str(g[0]) for g in gone})


async def count(conn: AsyncConnection, queue_id: str, partition: str | None) -> int:
    q = sa.select(sa.func.count()).where(ITEMS.c.queue_id == queue_id)
    if partition is not None:
        q = q.where(ITEMS.c.partition == partition)
    return int((await conn.execute(q)).scalar_one())


async def put(cp: ControlPlane, queue_id: str, partition: str | None, values: list[bytes],
              ttl: float | None, wait: float) -> bool:
    """Append values to a partition; if it is full, wait up to `wait` seconds for room.
    Whether they went in."""
    key = check_partition(partition)
    for v in values:
        if len(v) > MAX_ITEM_BYTES:
            raise invalid(
                f"A queue item is {len(v)} bytes serialized; items are at most 1 MiB. Store "
                "large data in a Volume or Dict and put a reference to it on the queue."
            )
    if len(values) > MAX_PARTITION_ITEMS:
        raise invalid(f"A partition holds at most {MAX_PARTITION_ITEMS} items; put fewer at once.")
    lasts = float(ttl or 86400)
    if not 0 < lasts <= MAX_TTL:
        raise invalid(f"partition_ttl must be between 1 and {MAX_TTL} seconds.")

    async def op(conn: AsyncConnection) -> bool:
        now = time.time()
        await expire(conn, queue_id, now)
        if await count(conn, queue_id, key) + len(values) > MAX_PARTITION_ITEMS:
            return False
        if values:
            await conn.execute(ITEMS.insert(), [
                {"queue_id": queue_id, "partition": key, "value": v, "created_at": now}
                for v in values
            ])
        expires = now + lasts if key else None
        where = (PARTS.c.queue_id == queue_id) & (PARTS.c.partition == key)
        if (await conn.execute(sa.select(PARTS.c.partition).where(where))).first() is None:
            await conn.execute(PARTS.insert().values(
                queue_id=queue_id, partition=key, expires_at=expires
            ))
        else:
            await conn.execute(PARTS.update().where(where).values(expires_at=expires))
        return True

    ok = await _waiting(cp, space_key(queue_id), wait, lambda: cp.db.write(op))
    if ok:
        cp.waiters.notify(items_key(queue_id))
    return bool(ok)


async def get(cp: ControlPlane, queue_id: str, partition: str | None, n: int,
              wait: float) -> list[bytes]:
    """Take up to n values from the front of a partition, waiting up to `wait` for the first."""
    key = check_partition(partition)

    async def op(conn: AsyncConnection) -> list[bytes]:
        await expire(conn, queue_id, time.time())
        rows = (await conn.execute(
            sa.select(ITEMS.c.id, ITEMS.c.value)
            .where(ITEMS.c.queue_id == queue_id, ITEMS.c.partition == key)
            .order_by(ITEMS.c.id).limit(n)
        )).all()
        if rows:
            await conn.execute(sa.delete(ITEMS).where(ITEMS.c.id.in_([r.id for r in rows])))
        return [bytes(r.value) for r in rows]

    values = await _waiting(cp, items_key(queue_id), wait, lambda: cp.db.write(op))
    if values:
        cp.waiters.notify(space_key(queue_id))
    return values or []


async def items(cp: ControlPlane, queue_id: str, partition: str | None, after: int,
                wait: float) -> list[list[Any]]:
    """[id, value] of the items after item `after`, without taking them (for iterate); waits
    up to `wait` for new ones."""
    key = check_partition(partition)

    async def op(conn: AsyncConnection) -> list[list[Any]]:
        await expire(conn, queue_id, time.time())
        rows = (await conn.execute(
            sa.select(ITEMS.c.id, ITEMS.c.value)
            .where(ITEMS.c.queue_id == queue_id, ITEMS.c.partition == key, ITEMS.c.id > after)
            .order_by(ITEMS.c.id).limit(ITEM_PAGE)
        )).all()
        return [[r.id, bytes(r.value)] for r in rows]

    found = await _waiting(cp, items_key(queue_id), wait, lambda: cp.db.write(op))
    return found or []


async def length(cp: ControlPlane, queue_id: str, partition: str | None, total: bool) -> int:
    """How many items a partition holds, or with total the whole queue."""
    key = None if total else check_partition(partition)

    async def op(conn: AsyncConnection) -> int:
        await expire(conn, queue_id, time.time())
        return await count(conn, queue_id, key)

    n: int = await cp.db.write(op)
    return n


async def clear(cp: ControlPlane, queue_id: str, partition: str | None, everything: bool) -> None:
    """Empty a partition, or with everything every partition of the queue."""
    if everything and partition is not None:
        raise invalid("Pass either partition= or all=True to clear, not both.")
    key = check_partition(partition)

    async def op(conn: AsyncConnection) -> None:
        if everything:
            await conn.execute(sa.delete(ITEMS).where(ITEMS.c.queue_id == queue_id))
            await conn.execute(sa.delete(PARTS).where(PARTS.c.queue_id == queue_id))
        else:
            await conn.execute(
                sa.delete(ITEMS).where(ITEMS.c.queue_id == queue_id, ITEMS.c.partition == key)
            )

    await cp.db.write(op)
    cp.waiters.notify(space_key(queue_id))


async def _waiting(cp: ControlPlane, key: Any, wait: float,
                   attempt: Callable[[], Awaitable[T]]) -> T:
    """Run attempt() until it gives a truthy result or `wait` seconds pass; between tries, sleep
    until a change to key wakes us."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        fut = cp.waiters.register(key)
        try:
            result = await attempt()
            remaining = deadline - loop.time()
            if result or remaining <= 0:
                return result
            await cp.waiters.wait(key, fut, remaining)
        finally:
            cp.waiters.discard(key, fut)


async def sweep_loop(cp: ControlPlane) -> None:
    """Drop expired partitions now and then, so untouched queues don't keep them forever."""
    while True:
        try:
            hit = await cp.db.write(lambda conn: expire(conn, None, time.time()))
            for queue_id in hit:
                cp.waiters.notify(space_key(queue_id))
        except Exception:
            log.exception("expiring queue partitions failed")
        await asyncio.sleep(SWEEP_EVERY)
