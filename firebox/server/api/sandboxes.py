"""The Sandbox API. Commands' output streams to clients over HTTP: a chunked response of
length-prefixed msgpack frames ({"fd", "data"} then {"exit"}), resumable with ?after=N; stdin
goes in with POSTs, in order. Everything else is one msgpack request and response."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...wire.sandbox import frame
from ..core import sandbox_records as records
from ..core import sandbox_specs
from ..core.apps import app_row
from ..core.sandboxes import Sandbox
from . import requests as rq
from .bodies import identity, msgpack_body, packed, plane, query
from .requests import MAX_WAIT


def running(request: Request) -> Sandbox:
    return records.running(plane(request), identity(request), request.path_params["sandbox_id"])


async def create(request: Request) -> Response:
    body = await msgpack_body(request, rq.CreateSandbox)
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, body.app_id)
    sb = await sandbox_specs.create(cp, who, app, **body.model_dump(exclude={"app_id"}))
    return packed({"id": sb.id, "isolation": sb.isolation})


async def get(request: Request) -> Response:
    return packed(await records.describe(plane(request), identity(request),
                                         request.path_params["sandbox_id"]))


async def wait(request: Request) -> Response:
    """The sandbox's state once it has ended, or after `timeout` seconds (at most 50)."""
    body = await msgpack_body(request, rq.SandboxWait)
    limit = min(MAX_WAIT if body.timeout is None else body.timeout, MAX_WAIT)
    return packed(await records.wait(plane(request), identity(request),
                                     request.path_params["sandbox_id"], limit))


async def list_sandboxes(request: Request) -> Response:
    app_id = query(request, rq.ListSandboxes).app_id
    wanted = dict(t.split("=", 1) for t in request.query_params.getlist("tag") if "=" in t)
    found = await records.running_in(plane(request), identity(request), app_id, wanted)
    return packed({"sandboxes": found})


async def lookup(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    q = query(request, rq.LookupSandbox)
    app = await app_row(cp, who, q.app)
    return packed(await records.named(cp, app, q.name))


async def terminate(request: Request) -> Response:
    return packed(await records.terminate(plane(request), identity(request),
                                          request.path_params["sandbox_id"]))


async def set_tags(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxTags)
    await records.set_tags(plane(request), identity(request), request.path_params["sandbox_id"],
                           body.tags)
    return packed({})


async def exec_command(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxExec)
    sb = running(request)
    e = await sandbox_specs.exec_command(plane(request), identity(request), sb,
                                         **body.model_dump())
    return packed({"exec_id": e.id})


async def output(request: Request) -> StreamingResponse:
    _, e = records.command(plane(request), identity(request), request.path_params["sandbox_id"],
                           request.path_params["exec_id"])
    after = query(request, rq.ExecOutput).after

    async def frames() -> AsyncIterator[bytes]:
        async for message in e.messages(after):
            yield frame(message)

    return StreamingResponse(frames(), media_type="application/octet-stream")


async def stdin(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxStdin)
    records.send_stdin(plane(request), identity(request), request.path_params["sandbox_id"],
                       request.path_params["exec_id"], body.data, body.eof)
    return packed({})


async def resize(request: Request) -> Response:
    body = await msgpack_body(request, rq.ExecResize)
    records.resize(plane(request), identity(request), request.path_params["sandbox_id"],
                   request.path_params["exec_id"], list(body.size))
    return packed({})


async def poll_exec(request: Request) -> Response:
    _, e = records.command(plane(request), identity(request), request.path_params["sandbox_id"],
                           request.path_params["exec_id"])
    return packed({"returncode": e.code})


async def file_op(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxFile)
    sb = running(request)
    options = {k: v for k in ("parents", "recursive", "append")
               if (v := getattr(body, k)) is not None}
    result, out = await plane(request).sandboxes.file_op(sb, body.op, body.path, body.data,
                                                         **options)
    return packed({"result": result, "data": out})


async def list_tunnels(request: Request) -> Response:
    return packed({"tunnels": records.tunnels(plane(request), running(request))})


async def snapshot(request: Request) -> Response:
    sb = running(request)
    return packed({"image_id": await records.snapshot(plane(request), identity(request), sb)})


routes = [
    Route("/v1/sandboxes", create, methods=["POST"]),
    Route("/v1/sandboxes", list_sandboxes, methods=["GET"]),
    Route("/v1/sandboxes/lookup", lookup, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}", get, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/wait", wait, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/terminate", terminate, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/tags", set_tags, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec", exec_command, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}/output", output, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}/stdin", stdin, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}/resize", resize, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}", poll_exec, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/fs", file_op, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/snapshot", snapshot, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/tunnels", list_tunnels, methods=["GET"]),
]
