"""Jobs: the one-input calls that a foreign queue API (RunPod's endpoints) makes, as that API
sees them: whether each waits or runs, when it was accepted, and its function's queue,
workers and finished counts."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ... import wire
from ...store import schema as s
from ...store.db import Database
from .functions import FunctionRecord
from .scheduler import Scheduler


@dataclass(frozen=True)
class Queue:
    waiting: int  # inputs no container holds yet
    running: int
    idle_workers: int
    running_workers: int
    starting_workers: int


def running(scheduler: Scheduler, call_id: str) -> bool:
    """Whether an input of the call runs in a container now (not prefetched, waiting)."""
    return any(inp.runs_in is not None for inp in scheduler.by_call.get(call_id, ()))


def queue(scheduler: Scheduler, fn: FunctionRecord) -> Queue:
    pools = [p for p in scheduler.pools_of(fn.app_id) if p.function.id == fn.id]
    containers = [c for p in pools for c in p.live_containers()]
    busy = sum(1 for c in containers if c.state == "ready" and c.running)
    return Queue(
        waiting=sum(len(p.queue) + p.prefetched for p in pools),
        running=sum(p.running - p.prefetched for p in pools),
        idle_workers=sum(1 for c in containers if c.state == "ready" and not c.running),
        running_workers=busy,
        starting_workers=sum(1 for c in containers if c.state == "starting"),
    )


def waiting_calls(scheduler: Scheduler, fn: FunctionRecord) -> list[str]:
    """The calls of fn whose inputs wait for a container, oldest first."""
    seen: dict[str, None] = {}
    for pool in scheduler.pools_of(fn.app_id):
        if pool.function.id == fn.id:
            for inp in pool.queue:
                seen.setdefault(inp.call_id, None)
    return list(seen)


async def accepted_at(db: Database, call_id: str) -> tuple[str, str, float] | None:
    """(workspace id, function id, when it was accepted) of a stored call."""
    rows = await db.read(sa.select(s.calls.c.workspace_id, s.calls.c.function_id,
                                   s.calls.c.created_at).where(s.calls.c.id == call_id))
    return (rows[0][0], rows[0][1], float(rows[0][2])) if rows else None


async def finished(db: Database, fn: FunctionRecord) -> dict[str, int]:
    """How many of fn's inputs ended in each terminal status."""
    rows = await db.read(
        sa.select(s.outputs.c.status, sa.func.count())
        .select_from(s.outputs.join(s.calls, s.calls.c.id == s.outputs.c.call_id))
        .where(s.calls.c.function_id == fn.id, s.outputs.c.status.in_(wire.TERMINAL))
        .group_by(s.outputs.c.status))
    return {status: int(count) for status, count in rows}


async def arguments(db: Database, call_id: str) -> bytes | None:
    """The stored arguments of a call's first input (for a gateway to read as plain data)."""
    rows = await db.read(sa.select(s.inputs.c.args).where(s.inputs.c.call_id == call_id,
                                                         s.inputs.c.idx == 0))
    return bytes(rows[0][0]) if rows else None


async def recent_calls(db: Database, workspace_id: str, function_name: str, method: str,
                       limit: int) -> list[str]:
    """The workspace's newest calls of `method` of functions (or classes) named function_name."""
    rows = await db.read(
        sa.select(s.calls.c.id)
        .select_from(s.calls.join(s.functions, s.functions.c.id == s.calls.c.function_id))
        .where(s.calls.c.workspace_id == workspace_id, s.functions.c.name == function_name,
               s.calls.c.method == method)
        .order_by(s.calls.c.created_at.desc()).limit(limit))
    return [r[0] for r in rows]
