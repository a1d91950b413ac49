"""What the model gateway metered, read back: tokens and their cost per model beside the
container-seconds of the functions that serve them (`firebox usage --by model`), and time to
first token and tokens per second per model (`firebox app stats`)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from .metering import usage

if TYPE_CHECKING:
    from .plane import ControlPlane

STATS_WINDOW = 3600.0  # seconds of requests `firebox app stats` summarizes


class RequestLog:
    """The gateway's metered requests, written in batches: the rows that come in before the
    next group commit go in one statement."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: list[dict[str, Any]] = []

    def record(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) == 1:
            self.db.write_soon(self._write)

    async def _write(self, conn: Any) -> None:
        rows, self.rows = self.rows, []
        if rows:
            await conn.execute(s.model_requests.insert(), rows)


async def by_model(cp: ControlPlane, workspace_id: str, *, app: str | None,
                   since: float | None) -> dict[str, Any]:
    """Per model: requests, prompt, completion and cached tokens, their cost at the price
    table's per-token rates, and the serving function's container-seconds and compute cost,
    shared among the models it serves by their requests."""
    await cp.db.barrier()  # the requests metered just now are written
    q = (sa.select(s.model_requests.c.base, s.model_requests.c.function_id,
                   s.model_requests.c.prompt_tokens, s.model_requests.c.completion_tokens,
                   s.model_requests.c.cached_tokens, s.model_requests.c.cost_usd,
                   s.model_requests.c.usage_counted,
                   s.functions.c.name.label("function"), s.apps.c.name.label("app"),
                   s.apps.c.id.label("app_id"))
         .join(s.functions, s.functions.c.id == s.model_requests.c.function_id)
         .join(s.apps, s.apps.c.id == s.functions.c.app_id)
         .where(s.model_requests.c.workspace_id == workspace_id))
    if app:
        q = q.where(sa.or_(s.apps.c.id == app, s.apps.c.name == app))
    if since is not None:
        q = q.where(s.model_requests.c.created_at > since)
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    per_function: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in await cp.db.read(q):
        g = rows[r.base]
        g["function"] = f"{r.app or r.app_id}/{r.function}"
        g["requests"] += 1
        g["counted_requests"] += 1 if r.usage_counted else 0  # no usage from the engine
        g["prompt_tokens"] += r.prompt_tokens
        g["completion_tokens"] += r.completion_tokens
        g["cached_tokens"] += r.cached_tokens
        g["token_cost_usd"] += r.cost_usd
        per_function[g["function"]][r.base] += 1
    compute = await usage(cp.db, workspace_id, cp.prices, app=app, since=since,
                          by="function", now=time.time())
    seconds = {row["key"]: row for row in compute["rows"]}
    for name, g in rows.items():
        served = seconds.get(g["function"], {})
        share = g["requests"] / sum(per_function[g["function"]].values())
        g["container_seconds"] = served.get("container_seconds", 0.0) * share
        g["compute_cost_usd"] = served.get("cost_usd", 0.0) * share
        g["cost_usd"] = g["token_cost_usd"] + g["compute_cost_usd"]
    out = [{"key": name, **g} for name, g in sorted(rows.items())]
    total: dict[str, float] = defaultdict(float)
    for g in out:
        for k, v in g.items():
            if isinstance(v, int | float):
                total[k] += v
    prices = {k: v for k, v in cp.prices.items() if k.startswith("model_")}
    return {"by": "model", "rows": out, "total": dict(total), "prices": prices}


async def model_stats(cp: ControlPlane, app_id: str) -> list[dict[str, Any]]:
    """Per model of the app, over the last hour: requests, median and p95 time to first token
    (streams), median tokens per second after it, and errors."""
    await cp.db.barrier()
    rows = await cp.db.read(
        sa.select(s.model_requests.c.base, s.model_requests.c.status,
                  s.model_requests.c.ttft_ms, s.model_requests.c.duration_ms,
                  s.model_requests.c.completion_tokens)
        .where(s.model_requests.c.app_id == app_id,
               s.model_requests.c.created_at > time.time() - STATS_WINDOW))
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        groups[r.base].append(r)
    out = []
    for name, found in sorted(groups.items()):
        ttfts = sorted(r.ttft_ms for r in found if r.ttft_ms is not None)
        rates = [r.completion_tokens / ((r.duration_ms - (r.ttft_ms or 0)) / 1000)
                 for r in found if r.status == 200 and r.completion_tokens > 1
                 and r.duration_ms > (r.ttft_ms or 0)]
        out.append({
            "model": name, "requests": len(found),
            "errors": sum(1 for r in found if r.status != 200),
            "ttft_p50_ms": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_ms": ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.95))] if ttfts else None,
            "tokens_per_second_p50": statistics.median(rates) if rates else None,
        })
    return out
