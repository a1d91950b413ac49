"""The client API of apps and functions, and their logs; core/apps.py does what they ask."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..core import apps
from . import requests as rq
from .bodies import identity, json_body, plane, query

LOG_PAGE = 1000  # log lines read from the database at a time


# ---- apps --------------------------------------------------------------------------------


async def create_app(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateApp)
    app_id, created = await apps.create(plane(request), identity(request), body.name, body.mode)
    return JSONResponse({"app_id": app_id, "created": created})


async def register_functions(request: Request) -> JSONResponse:
    body = await json_body(request, rq.RegisterFunctions)
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    entries = [(f.name, f.spec) for f in body.functions]
    return JSONResponse(await apps.register_functions(
        cp, who, app, entries, body.tag, deployer=apps.Deployer(body.client.version,
                                                                 body.client.commit)))


async def heartbeat(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    await apps.heartbeat(cp, app)
    return JSONResponse({"state": app.state})


async def stop_app(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    was_stopped = app.state == "stopped"
    if not was_stopped:
        await cp.stop_app(app.id, "stopped by request")
    return JSONResponse({"app_id": app.id, "state": "stopped", "was_stopped": was_stopped})


async def list_apps(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    limit = query(request, rq.ListApps).limit
    return JSONResponse({"apps": await apps.list_apps(cp, who, limit)})


async def app_history(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    return JSONResponse({"app_id": app.id, "name": app.name,
                         "events": await apps.history(cp, app)})


async def app_versions(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    return JSONResponse({"app_id": app.id, "name": app.name,
                         "versions": await apps.versions(cp, app)})


async def rollback(request: Request) -> JSONResponse:
    body = await json_body(request, rq.Rollback)
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    result = await apps.rollback(cp, who, app, body.version,
                                 apps.Deployer(body.client.version, body.client.commit))
    return JSONResponse({"app_id": app.id, "name": app.name, "version": result["version"],
                         "rollback_of": result["rollback_of"], "web_urls": result["web_urls"]})


async def app_logs(request: Request) -> StreamingResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    q = query(request, rq.AppLogs)
    follow, after = q.follow in ("1", "true"), q.after
    live_app = apps.is_live(cp, app)

    async def lines() -> AsyncIterator[bytes]:
        queue = cp.logs.follow(app.id) if follow and live_app else None
        last = after
        try:
            # A line emitted just before we began following may still wait for its commit:
            # let it land, so the history below holds it.
            await cp.logs.stored()
            while True:  # page by page, so a long history never sits in memory at once
                page = await cp.logs.history(app.id, after=last, limit=LOG_PAGE)
                for line in page:
                    last = line.id
                    yield (json.dumps(line.to_json()) + "\n").encode()
                if len(page) < LOG_PAGE:
                    break
            if queue is None:
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield b"\n"  # keeps the connection alive; clients skip blank lines
                    continue
                if item is None:
                    return
                if item.id > last:
                    last = item.id
                    yield (json.dumps(item.to_json()) + "\n").encode()
        finally:
            if queue is not None:
                cp.logs.unfollow(app.id, queue)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# ---- functions ---------------------------------------------------------------------------


async def lookup_function(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    q = query(request, rq.LookupFunction)
    return JSONResponse(await apps.lookup_function(cp, who, q.name, q.app_id, q.app,
                                                   q.version))


async def create_variant(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateVariant)
    cp, who = plane(request), identity(request)
    return JSONResponse(await apps.create_variant(cp, who, request.path_params["function_id"],
                                                  body.options))


routes = [
    Route("/v1/apps", create_app, methods=["POST"]),
    Route("/v1/apps", list_apps, methods=["GET"]),
    Route("/v1/apps/{app_id}/functions", register_functions, methods=["POST"]),
    Route("/v1/apps/{app_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/apps/{app_id}/stop", stop_app, methods=["POST"]),
    Route("/v1/apps/{app_id}/history", app_history, methods=["GET"]),
    Route("/v1/apps/{app_id}/logs", app_logs, methods=["GET"]),
    Route("/v1/apps/{app_id}/versions", app_versions, methods=["GET"]),
    Route("/v1/apps/{app_id}/rollback", rollback, methods=["POST"]),
    Route("/v1/functions/lookup", lookup_function, methods=["GET"]),
    Route("/v1/functions/{function_id}/variants", create_variant, methods=["POST"]),
]
