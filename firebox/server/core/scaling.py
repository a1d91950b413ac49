"""Scaling as clients see and steer it: an app's containers, queues and scale events per
function, the machine's reserved share, and a running function's autoscaler."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from .errors import invalid, not_found
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane

AUTOSCALER_KEYS = ("min_containers", "max_containers", "buffer_containers", "scaledown_window")
EVENTS = 20  # the latest scale events shown per function
STARTS = 200  # the latest containers whose starts are summed up


def app_stats(cp: ControlPlane, app: Any) -> dict[str, Any]:
    """Per function of the app (a row of apps): containers by state, queue depth, inputs in
    flight, recent scale events."""
    functions: dict[str, dict[str, Any]] = {}
    for pool in cp.scheduler.pools_of(app.id):
        fn = pool.function
        entry = functions.setdefault(fn.name, {
            "function": fn.name,
            "containers": {"starting": 0, "ready": 0, "stopping": 0},
            "queued": 0,
            "running": 0,
            "autoscaler": {k: fn.get(k) for k in AUTOSCALER_KEYS},
            "events": [],
        })
        for c in pool.containers.values():
            entry["containers"][c.state] += 1
        entry["queued"] += len(pool.queue)
        entry["running"] += pool.running
        entry["events"].extend({"ts": ts, "text": text} for ts, text in pool.events)
    for entry in functions.values():
        entry["events"] = sorted(entry["events"], key=lambda e: e["ts"])[-EVENTS:]
    capacity = cp.scheduler.capacity
    return {
        "app_id": app.id,
        "name": app.name,
        "state": app.state,
        "functions": sorted(functions.values(), key=lambda e: e["function"]),
        "machine": {
            "cpu": capacity.cpu,
            "cpu_reserved": round(capacity.used_cpu, 3),
            "memory_mb": capacity.memory_mb,
            "memory_reserved_mb": capacity.used_memory,
        },
    }


async def recent_starts(cp: ControlPlane, app_id: str) -> list[dict[str, Any]]:
    """How the app's latest containers started, per function and kind (cold, standby, template,
    stored: wire/messages.py START_KINDS): how many, and the median and slowest seconds from
    being asked for to ready. Kept in the database: it holds across scale-to-zero and restarts."""
    c, f = s.containers.c, s.functions.c
    rows = await cp.db.read(
        sa.select(f.name, c.start_kind, c.ready_at - c.created_at)
        .select_from(s.containers.join(s.functions, s.functions.c.id == c.function_id))
        .where(c.app_id == app_id, c.ready_at.is_not(None))
        .order_by(c.created_at.desc()).limit(STARTS))
    grouped: dict[tuple[str, str], list[float]] = {}
    for name, kind, seconds in rows:
        grouped.setdefault((name, kind or "cold"), []).append(max(0.0, seconds))
    return [{"function": name, "start": kind, "count": len(times),
             "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
            for (name, kind), times in sorted(grouped.items())]


async def update_autoscaler(cp: ControlPlane, who: Identity, function_id: str,
                            changes: dict[str, Any]) -> dict[str, Any]:
    """Change a running function's autoscaler; it holds until the function is deployed again.
    The autoscaler's settings after the change."""
    fn = await cp.load_function(function_id)
    if fn is None or fn.workspace_id != who.workspace_id:
        raise not_found("No such function in this workspace.")
    merged = {**{k: fn.get(k) for k in AUTOSCALER_KEYS}, **changes}
    if merged["max_containers"] is not None and merged["min_containers"] > merged["max_containers"]:
        raise invalid("min_containers cannot be more than max_containers.")
    rows = await cp.db.read(sa.select(s.functions).where(s.functions.c.id == function_id))
    stored = json.loads(rows[0].spec)
    if rows[0].parent_id and rows[0].parent_id != rows[0].app_id:  # a variant, not a version
        stored.setdefault("options", {}).update(changes)
    else:
        stored.update(changes)
    text = json.dumps(stored)
    await cp.db.write(
        lambda conn: conn.execute(
            s.functions.update().where(s.functions.c.id == function_id).values(spec=text)
        )
    )
    fn.spec.update(changes)
    cp.scheduler.autoscaler_changed(
        fn, "autoscaler updated: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return {k: fn.get(k) for k in AUTOSCALER_KEYS}
