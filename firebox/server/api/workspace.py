"""The workspace's own settings: today, the isolation its containers get by default."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...backends import isolation
from ...store import schema as s
from ..core.errors import ApiError, invalid
from ..core.isolation_floor import refusal
from . import requests as rq
from .apps import identity, json_body, plane


async def _describe(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    rows = await cp.db.read(sa.select(s.workspaces).where(s.workspaces.c.id == who.workspace_id))
    return JSONResponse({
        "workspace_id": who.workspace_id,
        "name": rows[0].name,
        "isolation": rows[0].isolation,
        "server_isolation": cp.backend.isolation,
    })


async def get_workspace(request: Request) -> JSONResponse:
    return await _describe(request)


async def update_workspace(request: Request) -> JSONResponse:
    """Set (or with null, clear) the isolation of functions that do not choose one."""
    body = await json_body(request, rq.UpdateWorkspace)
    cp, who = plane(request), identity(request)
    if who.kind == "container":
        raise invalid("Only a user token can change the workspace's settings.")
    mode = body.isolation
    if mode is not None:
        try:
            mode = isolation.check_mode(mode)
        except isolation.IsolationUnavailable as exc:
            raise invalid(str(exc)) from None
        problem = None if who.operator else refusal(mode, cp.backend.isolation, "The workspace")
        if problem:
            raise ApiError(403, "AuthError", problem + ".")
    await cp.db.write(
        lambda conn: conn.execute(
            s.workspaces.update().where(s.workspaces.c.id == who.workspace_id)
            .values(isolation=mode)
        )
    )
    cp.scheduler.set_workspace_isolation(who.workspace_id, mode)
    return await _describe(request)


routes = [
    Route("/v1/workspace", get_workspace, methods=["GET"]),
    Route("/v1/workspace", update_workspace, methods=["PATCH"]),
]
