"""After a restart: every accepted input without an output is queued again, its arguments left
in the database until its turn comes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ... import wire
from . import failures, input_rows
from .functions import FunctionRecord
from .pools import Input
from .scheduler import Scheduler


async def recover(scheduler: Scheduler,
                  load_function: Callable[[str], Awaitable[FunctionRecord | None]]) -> int:
    """Queue the stored pending inputs again, in the order they came (a pool's parameters read
    once); returns how many there were. Those of stopped apps fail."""
    rows = await input_rows.pending(scheduler.db)
    touched: set[tuple[str, str]] = set()
    for r in rows:
        fn = await load_function(r.function_id)
        await scheduler.outputs.open(r.call_id)
        if fn is None:
            continue
        pool = scheduler.pools.get((fn.id, r.pool_key))
        if pool is None:
            params = await input_rows.call_params(scheduler.db, r.call_id)
            pool = scheduler.pool(fn, r.pool_key, params)
        inp = Input(r.id, r.call_id, r.idx, None, r.attempts, pool, r.method, size=r.size)
        scheduler.by_call.setdefault(r.call_id, set()).add(inp)
        if fn.app_id in scheduler.stopped_apps:
            scheduler.finish(inp, wire.FAILURE, failures.app_stopped())
            continue
        # In its queue at once, the pool is not forgotten while the rest are read; handed out
        # once all are queued.
        pool.queue.append(inp, storable=True)
        touched.add(pool.key)
    for key in touched:
        scheduler.dispatch(scheduler.pools[key])
    return len(rows)
