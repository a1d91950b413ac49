"""The API of the workspace's containers: list the running ones, stop one, read one's output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..core import container_records
from . import requests as rq
from .bodies import identity, plane, query

LOG_PAGE = 1000  # log lines read from the database at a time


async def list_containers(request: Request) -> JSONResponse:
    containers = await container_records.running(plane(request), identity(request))
    return JSONResponse({"containers": containers})


async def stop_container(request: Request) -> JSONResponse:
    container_id = request.path_params["container_id"]
    container_records.stop(plane(request), identity(request), container_id)
    return JSONResponse({"container_id": container_id, "state": "stopping"})


async def container_logs(request: Request) -> StreamingResponse:
    cp, who = plane(request), identity(request)
    container_id = request.path_params["container_id"]
    last = query(request, rq.ContainerLogs).after
    first = await container_records.output(cp, who, container_id, last, LOG_PAGE)

    async def lines() -> AsyncIterator[bytes]:
        nonlocal last
        page = first
        while True:  # page by page, so a long history never sits in memory at once
            for line in page:
                last = line.id
                yield (json.dumps(line.to_json()) + "\n").encode()
            if len(page) < LOG_PAGE:
                return
            page = await container_records.output(cp, who, container_id, last, LOG_PAGE)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


routes = [
    Route("/v1/containers", list_containers, methods=["GET"]),
    Route("/v1/containers/{container_id}/stop", stop_container, methods=["POST"]),
    Route("/v1/containers/{container_id}/logs", container_logs, methods=["GET"]),
]
