"""The API of tokens: what the caller's token is, and a new user token for its workspace."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ... import wire
from ..core import workspaces
from .bodies import identity, plane


async def token_info(request: Request) -> JSONResponse:
    info = await workspaces.token_info(plane(request), identity(request))
    return JSONResponse({**info, "server_version": wire.VERSION})


async def new_token(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    token = await workspaces.new_user_token(cp, who)
    return JSONResponse({"token": token, "workspace_id": who.workspace_id,
                         "kind": workspaces.USER})


routes = [
    Route("/v1/token", token_info, methods=["GET"]),
    Route("/v1/tokens", new_token, methods=["POST"]),
]
