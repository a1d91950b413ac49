"""The API of the workspace's containers: list the running ones, stop one, read one's output,
exec a command in one (its output streams as a sandbox command's does: api/sandboxes.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ...wire.sandbox import frame
from ..core import container_execs, container_records
from . import requests as rq
from .bodies import identity, msgpack_body, packed, plane, query

LOG_PAGE = 1000  # log lines read from the database at a time
CHECK_EXIT = 1.0  # seconds between looks at whether a followed container has exited
KEEPALIVE = 15.0  # seconds of silence before a blank line keeps the stream open


async def list_containers(request: Request) -> JSONResponse:
    containers = await container_records.running(plane(request), identity(request))
    return JSONResponse({"containers": containers})


async def stop_container(request: Request) -> JSONResponse:
    container_id = request.path_params["container_id"]
    container_records.stop(plane(request), identity(request), container_id)
    return JSONResponse({"container_id": container_id, "state": "stopping"})


async def container_logs(request: Request) -> StreamingResponse:
    """A container's output, running or gone; with follow, until the container exits."""
    cp, who = plane(request), identity(request)
    container_id = request.path_params["container_id"]
    q = query(request, rq.ContainerLogs)
    app_id = await container_records.app_of(cp, who, container_id)
    follow = q.follow in ("1", "true") and container_records.is_running(cp, container_id)

    async def lines() -> AsyncIterator[bytes]:
        # Follow before reading the history, so no line falls between the two.
        queue = cp.logs.follow(app_id) if follow else None
        last, quiet = q.after, 0.0
        try:
            await cp.logs.stored()
            while True:  # page by page, so a long history never sits in memory at once
                page = await cp.logs.history(app_id, last, LOG_PAGE, container_id=container_id)
                for line in page:
                    last = line.id
                    yield (json.dumps(line.to_json()) + "\n").encode()
                if len(page) < LOG_PAGE:
                    break
            while queue is not None:
                try:
                    item = await asyncio.wait_for(queue.get(), CHECK_EXIT)
                except TimeoutError:
                    if not container_records.is_running(cp, container_id):
                        return
                    quiet += CHECK_EXIT
                    if quiet >= KEEPALIVE:
                        quiet = 0.0
                        yield b"\n"  # keeps the connection alive; clients skip blank lines
                    continue
                if item is None:
                    return
                if item.container_id == container_id and item.id > last:
                    last = item.id
                    yield (json.dumps(item.to_json()) + "\n").encode()
        finally:
            if queue is not None:
                cp.logs.unfollow(app_id, queue)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def exec_command(request: Request) -> Response:
    body = await msgpack_body(request, rq.ContainerExec)
    e = container_execs.start(plane(request), identity(request),
                              request.path_params["container_id"], body.args, body.workdir,
                              body.pty, list(body.pty_size) if body.pty_size else None)
    return packed({"exec_id": e.id})


async def exec_output(request: Request) -> StreamingResponse:
    e = container_execs.command(plane(request), identity(request),
                                request.path_params["container_id"], request.path_params["exec_id"])
    after = query(request, rq.ExecOutput).after

    async def frames() -> AsyncIterator[bytes]:
        async for message in e.messages(after):
            yield frame(message)

    return StreamingResponse(frames(), media_type="application/octet-stream")


async def exec_stdin(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxStdin)
    container_execs.stdin(plane(request), identity(request), request.path_params["container_id"],
                          request.path_params["exec_id"], body.data, body.eof)
    return packed({})


async def exec_resize(request: Request) -> Response:
    body = await msgpack_body(request, rq.ExecResize)
    container_execs.resize(plane(request), identity(request), request.path_params["container_id"],
                           request.path_params["exec_id"], list(body.size))
    return packed({})


routes = [
    Route("/v1/containers", list_containers, methods=["GET"]),
    Route("/v1/containers/{container_id}/stop", stop_container, methods=["POST"]),
    Route("/v1/containers/{container_id}/logs", container_logs, methods=["GET"]),
    Route("/v1/containers/{container_id}/exec", exec_command, methods=["POST"]),
    Route("/v1/containers/{container_id}/exec/{exec_id}/output", exec_output, methods=["GET"]),
    Route("/v1/containers/{container_id}/exec/{exec_id}/stdin", exec_stdin, methods=["POST"]),
    Route("/v1/containers/{container_id}/exec/{exec_id}/resize", exec_resize, methods=["POST"]),
]
