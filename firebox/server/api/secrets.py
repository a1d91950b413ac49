"""The Secret API: named or anonymous sets of environment variables, encrypted at rest. Values
go in and reach containers; they never come back out through the API."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core import secrets
from . import requests as rq
from .bodies import identity, json_body, plane


async def create(request: Request) -> JSONResponse:
    """Store a secret: named (exists → AlreadyExistsError unless overwrite) or anonymous."""
    body = await json_body(request, rq.CreateSecret)
    secret_id, keys = await secrets.create(plane(request), identity(request), body.env,
                                           body.name, body.overwrite)
    return JSONResponse({"id": secret_id, "keys": keys})


async def lookup(request: Request) -> JSONResponse:
    """A named secret's id and key names; checks that required keys are there."""
    return JSONResponse(await secrets.lookup(
        plane(request), identity(request), request.path_params["name"],
        request.query_params.getlist("required_key")))


async def list_secrets(request: Request) -> JSONResponse:
    return JSONResponse({"secrets": await secrets.named(plane(request), identity(request))})


async def delete(request: Request) -> JSONResponse:
    secret_id = await secrets.delete(plane(request), identity(request),
                                     request.path_params["name"])
    return JSONResponse({"id": secret_id})


routes = [
    Route("/v1/secrets", create, methods=["POST"]),
    Route("/v1/secrets", list_secrets, methods=["GET"]),
    Route("/v1/secrets/{name}", lookup, methods=["GET"]),
    Route("/v1/secrets/{name}", delete, methods=["DELETE"]),
]
