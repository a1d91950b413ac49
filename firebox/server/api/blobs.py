"""The blob API: content-addressed uploads, readable only by the workspaces that uploaded them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ...store import schema as s
from ...wire.digests import SHA256
from ..core.errors import invalid, not_found
from ..core.ownership import owned
from . import requests as rq
from .apps import identity, json_body, plane

WRITE_SIZE = 1024 * 1024  # bytes of an upload handed to the disk at a time


async def missing_blobs(request: Request) -> JSONResponse:
    digests = (await json_body(request, rq.MissingBlobs)).digests
    have = await owned(plane(request), identity(request).workspace_id, digests)
    return JSONResponse({"missing": [d for d in digests if d not in have]})


async def put_blob(request: Request) -> JSONResponse:
    """Stream the body to disk, a MiB at a time off the event loop, hashing it as it comes: a
    blob is never held in memory (its size is capped by server/limits.py)."""
    cp, who = plane(request), identity(request)
    digest = request.path_params["digest"]
    try:
        upload = cp.blobs.receive(digest)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    with upload:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= WRITE_SIZE:
                await asyncio.to_thread(upload.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(upload.write, bytes(pending))
        try:
            await asyncio.to_thread(upload.finish)  # checks the content against its name
        except ValueError as exc:
            raise invalid(str(exc)) from None
    now = time.time()

    async def op(conn: Any) -> None:
        await conn.execute(
            cp.db.insert_ignore(s.blob_owners).values(
                workspace_id=who.workspace_id, sha256=digest, created_at=now
            )
        )

    await cp.db.write(op)
    return JSONResponse({"sha256": digest, "size": upload.size})


async def get_blob(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    digest = request.path_params["digest"]
    if not SHA256.match(digest) or not await owned(cp, who.workspace_id, [digest]):
        raise not_found(f"No blob {digest} in this workspace.")
    # Sent from the file a chunk at a time: a blob may be gigabytes.
    return FileResponse(cp.blobs.path(digest), media_type="application/octet-stream")


routes = [
    Route("/v1/blobs/missing", missing_blobs, methods=["POST"]),
    Route("/v1/blobs/{digest}", put_blob, methods=["PUT"]),
    Route("/v1/blobs/{digest}", get_blob, methods=["GET"]),
]
