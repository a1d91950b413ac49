"""The environments of the caller's workspace: create, list, rename, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core import environments
from . import requests as rq
from .bodies import identity, json_body, plane, query


async def create(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateEnvironment)
    await environments.create(plane(request), identity(request), body.name)
    return JSONResponse({"name": body.name})


async def listing(request: Request) -> JSONResponse:
    found = await environments.listing(plane(request), identity(request))
    return JSONResponse({"environments": found})


async def rename(request: Request) -> JSONResponse:
    body = await json_body(request, rq.Rename)
    await environments.rename(plane(request), identity(request), request.path_params["name"],
                              body.name)
    return JSONResponse({"name": body.name})


async def delete(request: Request) -> JSONResponse:
    force = query(request, rq.DeleteEnvironment).force == "1"
    gone = await environments.delete(plane(request), identity(request),
                                     request.path_params["name"], force)
    return JSONResponse(gone)


routes = [
    Route("/v1/environments", create, methods=["POST"]),
    Route("/v1/environments", listing, methods=["GET"]),
    Route("/v1/environments/{name}", rename, methods=["PATCH"]),
    Route("/v1/environments/{name}", delete, methods=["DELETE"]),
]
