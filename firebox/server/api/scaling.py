"""The API of scaling and metering: app stats, autoscaler updates, usage."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...store import schema as s
from ..core.errors import invalid, not_found
from ..core.metering import usage
from . import requests as rq
from .apps import app_row, identity, json_body, plane, query

AUTOSCALER_KEYS = ("min_containers", "max_containers", "buffer_containers", "scaledown_window")


async def app_stats(request: Request) -> JSONResponse:
    """Per function: containers by state, queue depth, inputs in flight, recent scale events."""
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
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
        entry["events"] = sorted(entry["events"], key=lambda e: e["ts"])[-20:]
    return JSONResponse({
        "app_id": app.id,
        "name": app.name,
        "state": app.state,
        "functions": sorted(functions.values(), key=lambda e: e["function"]),
        "machine": {
            "cpu": cp.scheduler.capacity.cpu,
            "cpu_reserved": round(cp.scheduler.capacity.used_cpu, 3),
            "memory_mb": cp.scheduler.capacity.memory_mb,
            "memory_reserved_mb": cp.scheduler.capacity.used_memory,
        },
    })


async def update_autoscaler(request: Request) -> JSONResponse:
    """Change a running function's autoscaler; holds until the function is deployed again."""
    body = await json_body(request, rq.UpdateAutoscaler)
    cp, who = plane(request), identity(request)
    fid = request.path_params["function_id"]
    fn = await cp.load_function(fid)
    if fn is None or fn.workspace_id != who.workspace_id:
        raise not_found("No such function in this workspace.")
    changes = body.model_dump(exclude_none=True)
    merged = {**{k: fn.get(k) for k in AUTOSCALER_KEYS}, **changes}
    if merged["max_containers"] is not None and merged["min_containers"] > merged["max_containers"]:
        raise invalid("min_containers cannot be more than max_containers.")
    rows = await cp.db.read(sa.select(s.functions).where(s.functions.c.id == fid))
    stored = json.loads(rows[0].spec)
    if rows[0].parent_id:
        stored.setdefault("options", {}).update(changes)
    else:
        stored.update(changes)
    text = json.dumps(stored)
    await cp.db.write(
        lambda conn: conn.execute(
            s.functions.update().where(s.functions.c.id == fid).values(spec=text)
        )
    )
    fn.spec.update(changes)
    cp.scheduler.autoscaler_changed(
        fn, "autoscaler updated: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return JSONResponse({"function_id": fid, "autoscaler": {k: fn.get(k) for k in AUTOSCALER_KEYS}})


async def get_usage(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    q = query(request, rq.Usage)
    by, since, app = q.by, q.since, q.app
    if app:
        await app_row(cp, who, app)  # a clear error for an unknown app
    await cp.outputs.commit_pending()  # per-input seconds come from the outputs
    report = await usage(cp.db, who.workspace_id, cp.prices, app=app, since=since, by=by,
                         now=time.time())
    return JSONResponse(report)


routes = [
    Route("/v1/apps/{app_id}/stats", app_stats, methods=["GET"]),
    Route("/v1/functions/{function_id}/autoscaler", update_autoscaler, methods=["POST"]),
    Route("/v1/usage", get_usage, methods=["GET"]),
]
