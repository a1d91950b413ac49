"""The API that manages the model gateway (gateways/openai.py serves the models): its keys,
and a workspace's limits. A user makes and deletes keys for its workspace's environment, each
scoped to models and with limits of its own; only an operator (an admin token) sets the
workspace's limits, which its users cannot lift."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core.errors import ApiError
from ..core.workspaces import Identity
from . import requests as rq
from .bodies import identity, json_body, plane


def _user(who: Identity) -> None:
    if who.kind not in ("user", "admin"):
        raise ApiError(403, "AuthError", "Only a user token can manage the model API's keys "
                                         "and limits.")


async def create_key(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    _user(who)
    body = await json_body(request, rq.CreateModelKey)
    made = await cp.model_keys.create(who.workspace_id, who.environment, body.name,
                                      body.models, body.limits)
    return JSONResponse(made)


async def list_keys(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    _user(who)
    return JSONResponse({"keys": await cp.model_keys.list(who.workspace_id, who.environment)})


async def delete_key(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    _user(who)
    await cp.model_keys.delete(who.workspace_id, request.path_params["key_id"])
    return JSONResponse({"deleted": request.path_params["key_id"]})


async def get_limits(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    return JSONResponse({"limits": await cp.model_limits.get(who.workspace_id)})


async def set_limits(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    if not who.operator:
        raise ApiError(403, "AuthError", "Only an operator (an admin token, `firebox token "
                                         "create --admin`) sets a workspace's model API limits.")
    body = await json_body(request, rq.ModelLimits)
    return JSONResponse({"limits": await cp.model_limits.set(who.workspace_id, body.limits)})


routes = [
    Route("/v1/model-api/keys", create_key, methods=["POST"]),
    Route("/v1/model-api/keys", list_keys, methods=["GET"]),
    Route("/v1/model-api/keys/{key_id}", delete_key, methods=["DELETE"]),
    Route("/v1/model-api/limits", get_limits, methods=["GET"]),
    Route("/v1/model-api/limits", set_limits, methods=["PUT"]),
]
