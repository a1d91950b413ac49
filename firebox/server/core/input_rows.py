"""The scheduler's reads and writes of stored inputs: what recovery queues again, arguments read
back for queued inputs, and the attempts a retried input has made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ... import wire
from ...store import schema as s
from ...store.db import Database
from .pools import Input, Pool

log = logging.getLogger("firebox.scheduler")

LOAD_BATCH = 500  # stored inputs whose arguments are read back from the database at a time


async def pending(db: Database) -> list[sa.Row[Any]]:
    """Every accepted input without an output, oldest first, with its call's function, method
    and pool, and the size of its arguments (which stay in the database)."""
    return await db.read(
        sa.select(
            s.inputs.c.id,
            s.inputs.c.call_id,
            s.inputs.c.idx,
            sa.func.length(s.inputs.c.args).label("size"),
            s.inputs.c.attempts,
            s.calls.c.function_id,
            s.calls.c.method,
            s.calls.c.pool_key,
        )
        .join(s.calls, s.calls.c.id == s.inputs.c.call_id)
        .where(s.inputs.c.state == wire.PENDING)
        .order_by(s.inputs.c.created_at, s.inputs.c.idx)
    )


async def call_params(db: Database, call_id: str) -> bytes | None:
    """A call's class parameters (None for a function's call)."""
    rows = await db.read(sa.select(s.calls.c.params).where(s.calls.c.id == call_id))
    return rows[0][0]


async def arguments(db: Database, input_ids: list[str]) -> dict[str, bytes]:
    """The stored arguments of those inputs that still have rows."""
    rows = await db.read(
        sa.select(s.inputs.c.id, s.inputs.c.args).where(s.inputs.c.id.in_(input_ids)))
    return {r.id: r.args for r in rows}


def note_attempts(db: Database, input_id: str, attempts: int) -> None:
    """Store how many attempts an input has made, with the next batch of writes."""
    db.write_soon(
        lambda conn: conn.execute(
            s.inputs.update().where(s.inputs.c.id == input_id).values(attempts=attempts)
        )
    )


async def read_back(db: Database, pool: Pool, live: Callable[[Input], bool],
                    gone: Callable[[Input], None], loaded: Callable[[Pool], None]) -> None:
    """Read the arguments of the pool's first stored inputs back into memory, a batch at a
    time while the window has room, and hand them out (`loaded`). The inputs being read are in
    no queue meanwhile: one cancelled or finished then (not `live`) is let go once read, and a
    live one whose rows are gone fails (`gone`)."""
    try:
        while taken := pool.queue.take_stored(LOAD_BATCH):
            try:
                found = await arguments(db, [inp.id for inp in taken])
            except Exception:
                pool.queue.put_back(taken)
                log.exception("could not read queued inputs' arguments; trying again")
                await asyncio.sleep(1.0)
                continue
            for inp in taken:
                args, waiting = found.get(inp.id), live(inp)
                if args is None or not waiting:
                    pool.queue.forget(inp)
                    if waiting:
                        gone(inp)
                    continue
                inp.args = args
                pool.queue.loaded(inp)
            loaded(pool)
    finally:
        pool.loading = None
