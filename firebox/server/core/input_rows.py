"""The scheduler's reads and writes of stored inputs: what recovery queues again, arguments read
back for queued inputs, and the attempts a retried input has made."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ... import wire
from ...store import schema as s
from ...store.db import Database


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
