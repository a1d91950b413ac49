"""The image API: build an image (progress and step logs streamed back), list and prune."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..core import images
from . import requests as rq
from .bodies import identity, json_body, plane

KEEPALIVE = 15  # seconds without an event after which a blank line keeps the connection open


async def build_image(request: Request) -> StreamingResponse:
    body = (await json_body(request, rq.BuildImage)).model_dump(exclude_none=True)
    cp, who = plane(request), identity(request)
    await images.check_uploaded(cp, who.workspace_id, body)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def lines() -> AsyncIterator[bytes]:
        images.start_build(cp, who.workspace_id, body, queue.put)
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield b"\n"  # keeps the connection alive through a long step
                continue
            if event is None:
                return
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def list_images(request: Request) -> JSONResponse:
    return JSONResponse({"images": await images.listing(plane(request),
                                                        identity(request).workspace_id)})


async def prune_images(request: Request) -> JSONResponse:
    """Forget the workspace's images no running or deployed app uses, then delete the layers
    no image of any workspace still names."""
    return JSONResponse(await images.prune(plane(request), identity(request).workspace_id))


routes = [
    Route("/v1/images/build", build_image, methods=["POST"]),
    Route("/v1/images", list_images, methods=["GET"]),
    Route("/v1/images/prune", prune_images, methods=["POST"]),
]
