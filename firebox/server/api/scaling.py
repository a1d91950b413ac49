"""The API of scaling and metering: app stats, autoscaler updates, usage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core import metering, model_usage, scaling
from ..core.apps import app_row
from . import requests as rq
from .bodies import identity, json_body, plane, query


async def app_stats(request: Request) -> JSONResponse:
    """Per function: containers by state, queue depth, inputs in flight, recent scale events;
    and how the latest containers started."""
    cp = plane(request)
    app = await app_row(cp, identity(request), request.path_params["app_id"])
    return JSONResponse({**scaling.app_stats(cp, app),
                         "starts": await scaling.recent_starts(cp, app.id),
                         "models": await model_usage.model_stats(cp, app.id)})


async def update_autoscaler(request: Request) -> JSONResponse:
    """Change a running function's autoscaler; holds until the function is deployed again."""
    body = await json_body(request, rq.UpdateAutoscaler)
    fid = request.path_params["function_id"]
    autoscaler = await scaling.update_autoscaler(plane(request), identity(request), fid,
                                                 body.model_dump(exclude_none=True))
    return JSONResponse({"function_id": fid, "autoscaler": autoscaler})


async def get_usage(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    q = query(request, rq.Usage)
    if q.app:
        await app_row(cp, who, q.app)  # a clear error for an unknown app
    if q.by == "model":
        return JSONResponse(await model_usage.by_model(cp, who.workspace_id, app=q.app,
                                                       since=q.since))
    return JSONResponse(await metering.workspace_usage(cp, who.workspace_id, app=q.app,
                                                       since=q.since, by=q.by))


routes = [
    Route("/v1/apps/{app_id}/stats", app_stats, methods=["GET"]),
    Route("/v1/functions/{function_id}/autoscaler", update_autoscaler, methods=["POST"]),
    Route("/v1/usage", get_usage, methods=["GET"]),
]
