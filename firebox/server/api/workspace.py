"""The workspace's own settings: today, the isolation its containers get by default."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core import workspaces
from . import requests as rq
from .bodies import identity, json_body, plane


async def get_workspace(request: Request) -> JSONResponse:
    return JSONResponse(await workspaces.describe(plane(request), identity(request)))


async def update_workspace(request: Request) -> JSONResponse:
    """Set (or with null, clear) the isolation of functions that do not choose one."""
    body = await json_body(request, rq.UpdateWorkspace)
    cp, who = plane(request), identity(request)
    await workspaces.set_isolation(cp, who, body.isolation)
    return JSONResponse(await workspaces.describe(cp, who))


routes = [
    Route("/v1/workspace", get_workspace, methods=["GET"]),
    Route("/v1/workspace", update_workspace, methods=["PATCH"]),
]
