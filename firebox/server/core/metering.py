"""Metering: what every container reserved and for how long, and how long every input ran,
recorded once, here, from the system's own events; and what those seconds cost."""

from __future__ import annotations

import datetime
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from ...wire import settings

if TYPE_CHECKING:
    from .plane import ControlPlane

# Per-second list prices of a hosted per-second GPU cloud, early 2026: what the same seconds
# would have cost there. Operators replace them with prices.toml in the state directory.
DEFAULT_PRICES: dict[str, float] = {
    "cpu_core_second": 0.0000131,
    "memory_gib_second": 0.00000222,
    "gpu:H100": 0.001097,
    "gpu:A100-80GB": 0.000694,
    "gpu:A100-40GB": 0.000583,
    "gpu:L40S": 0.000542,
    "gpu:L4": 0.000222,
    "gpu:T4": 0.000164,
}

ALIVE_FILE = "alive"  # touched while the server runs; a crash's end time for open containers


def load_prices(state_dir: Path) -> dict[str, float]:
    prices = dict(DEFAULT_PRICES)
    path = settings.PRICES.get() or state_dir / "prices.toml"
    if path.exists():
        with open(path, "rb") as f:
            table = tomllib.load(f)
        for key, value in table.items():
            if key == "models" and isinstance(value, dict):
                # [models."NAME"] input = ..., output = ...: USD per million tokens
                for name, entry in value.items():
                    for side in ("input", "output"):
                        if isinstance(entry, dict) and side in entry:
                            prices[f"model_{side}:{name}"] = float(entry[side])
            elif isinstance(value, dict):  # [gpu] H100 = ...
                prices.update({f"{key}:{k}": float(v) for k, v in value.items()})
            else:
                prices[key] = float(value)
    return prices


def parse_gpu(gpu: str | None) -> tuple[str | None, int]:
    if not gpu:
        return None, 0
    kind, _, count = gpu.partition(":")
    return kind, int(count or 1)


class Meter:
    def __init__(self, db: Database, state_dir: Path) -> None:
        self.db = db
        self.alive = state_dir / ALIVE_FILE

    def container_started(self, container_id: str, app_id: str, function_id: str, cpu: float,
                          memory_mb: int, gpu: str | None, at: float) -> None:
        self.db.write_soon(
            lambda conn: conn.execute(
                s.containers.insert().values(
                    id=container_id, app_id=app_id, function_id=function_id, state="starting",
                    created_at=at, cpu=cpu, memory_mb=memory_mb, gpu=gpu,
                )
            )
        )

    def container_ready(self, container_id: str, at: float, start_kind: str = "cold") -> None:
        self.db.write_soon(
            lambda conn: conn.execute(
                s.containers.update().where(s.containers.c.id == container_id)
                .values(state="ready", ready_at=at, start_kind=start_kind)
            )
        )

    def container_stopped(self, container_id: str, at: float, cause: str | None) -> None:
        self.db.write_soon(
            lambda conn: conn.execute(
                s.containers.update().where(s.containers.c.id == container_id)
                .values(state="stopped", stopped_at=at, cause=cause)
            )
        )

    def touch_alive(self) -> None:
        self.alive.write_text(repr(time.time()))

    async def close_orphans(self) -> int:
        """Containers a crashed server left open end when that server was last seen alive."""
        try:
            last_seen = float(self.alive.read_text())
        except (OSError, ValueError):
            last_seen = time.time()

        async def op(conn: Any) -> int:
            result = await conn.execute(
                s.containers.update()
                .where(s.containers.c.stopped_at.is_(None))
                .values(
                    state="stopped",
                    stopped_at=sa.func.max(s.containers.c.created_at, last_seen)
                    if self.db.dialect == "sqlite"
                    else sa.func.greatest(s.containers.c.created_at, last_seen),
                    cause="the server stopped unexpectedly",
                )
            )
            return int(result.rowcount or 0)

        return int(await self.db.write(op))


async def workspace_usage(cp: ControlPlane, workspace_id: str, *, app: str | None,
                          since: float | None, by: str) -> dict[str, Any]:
    """usage() at the plane's prices, up to now, outputs not yet written included (the
    per-input seconds come from them)."""
    await cp.outputs.commit_pending()
    return await usage(cp.db, workspace_id, cp.prices, app=app, since=since, by=by,
                       now=time.time())


async def usage(db: Database, workspace_id: str, prices: dict[str, float], *,
                app: str | None = None, since: float | None = None, by: str = "function",
                now: float | None = None) -> dict[str, Any]:
    """Container-seconds, resources and cost per function (or per day), and input run time."""
    now = now or time.time()
    q = (
        sa.select(s.containers, s.functions.c.name.label("function"), s.apps.c.name.label("app"))
        .join(s.apps, s.apps.c.id == s.containers.c.app_id)
        .join(s.functions, s.functions.c.id == s.containers.c.function_id)
        .where(s.apps.c.workspace_id == workspace_id)
    )
    if app:
        q = q.where(sa.or_(s.apps.c.id == app, s.apps.c.name == app))
    if since is not None:
        q = q.where(sa.or_(s.containers.c.stopped_at.is_(None), s.containers.c.stopped_at > since))
    rows = await db.read(q)
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        start = max(r.created_at, since or r.created_at)
        end = r.stopped_at if r.stopped_at is not None else now
        parts = _split(start, end, by, f"{r.app or r.app_id}/{r.function}")
        for i, (key, seconds) in enumerate(parts):
            g = groups[key]
            g["containers"] += 1 if i == 0 else 0
            g["container_seconds"] += seconds
            g["cpu_core_seconds"] += seconds * (r.cpu or 0)
            g["memory_gib_seconds"] += seconds * (r.memory_mb or 0) / 1024
            kind, count = parse_gpu(r.gpu)
            if kind:
                g[f"gpu_seconds:{kind}"] += seconds * count
    exec_q = (
        sa.select(s.outputs.c.exec_seconds, s.outputs.c.created_at,
                  s.functions.c.name.label("function"), s.apps.c.name.label("app"),
                  s.apps.c.id.label("app_id"))
        .join(s.calls, s.calls.c.id == s.outputs.c.call_id)
        .join(s.functions, s.functions.c.id == s.calls.c.function_id)
        .join(s.apps, s.apps.c.id == s.functions.c.app_id)
        .where(s.apps.c.workspace_id == workspace_id, s.outputs.c.exec_seconds.is_not(None))
    )
    if app:
        exec_q = exec_q.where(sa.or_(s.apps.c.id == app, s.apps.c.name == app))
    if since is not None:
        exec_q = exec_q.where(s.outputs.c.created_at > since)
    for r in await db.read(exec_q):
        key = _day(r.created_at) if by == "day" else f"{r.app or r.app_id}/{r.function}"
        groups[key]["input_seconds"] += r.exec_seconds
        groups[key]["inputs"] += 1
    out = []
    for key in sorted(groups):
        g = dict(groups[key])
        g["cost_usd"] = cost(g, prices)
        out.append({"key": key, **g})
    total: dict[str, float] = defaultdict(float)
    for g in out:
        for k, v in g.items():
            if k != "key":
                total[k] += v
    return {"by": by, "rows": out, "total": dict(total), "prices": prices}


def cost(g: dict[str, float], prices: dict[str, float]) -> float:
    total = g.get("cpu_core_seconds", 0) * prices["cpu_core_second"]
    total += g.get("memory_gib_seconds", 0) * prices["memory_gib_second"]
    for key, seconds in g.items():
        if key.startswith("gpu_seconds:"):
            total += seconds * prices.get("gpu:" + key.split(":", 1)[1], 0.0)
    return total


def _day(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


def _split(start: float, end: float, by: str, key: str) -> list[tuple[str, float]]:
    """The seconds of [start, end) under one key, or split across UTC days."""
    if end <= start:
        return []
    if by != "day":
        return [(key, end - start)]
    parts = []
    t = start
    while t < end:
        day = datetime.datetime.fromtimestamp(t, datetime.UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        next_day = (day + datetime.timedelta(days=1)).timestamp()
        parts.append((day.strftime("%Y-%m-%d"), min(end, next_day) - t))
        t = next_day
    return parts
