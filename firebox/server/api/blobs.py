"""The blob API: content-addressed uploads, readable only by the workspaces that uploaded them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..core import blobs
from . import requests as rq
from .bodies import identity, json_body, plane


async def missing_blobs(request: Request) -> JSONResponse:
    digests = (await json_body(request, rq.MissingBlobs)).digests
    return JSONResponse({"missing": await blobs.missing(plane(request),
                                                        identity(request).workspace_id, digests)})


async def put_blob(request: Request) -> JSONResponse:
    """Stream the body into the blob store: a blob is never held in memory."""
    digest = request.path_params["digest"]
    size = await blobs.receive(plane(request), identity(request).workspace_id, digest,
                               request.stream())
    return JSONResponse({"sha256": digest, "size": size})


async def get_blob(request: Request) -> Response:
    path = await blobs.path(plane(request), identity(request).workspace_id,
                            request.path_params["digest"])
    # Sent from the file a chunk at a time: a blob may be gigabytes.
    return FileResponse(path, media_type="application/octet-stream")


routes = [
    Route("/v1/blobs/missing", missing_blobs, methods=["POST"]),
    Route("/v1/blobs/{digest}", put_blob, methods=["PUT"]),
    Route("/v1/blobs/{digest}", get_blob, methods=["GET"]),
]
