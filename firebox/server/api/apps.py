"""The client API of apps and functions (core/apps.py does what they ask), and reading the
request bodies and queries of every route, and answering in msgpack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ... import wire
from ..core import apps
from ..core.errors import ApiError, invalid
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from . import limits
from . import requests as rq
from .requests import M, validate

LOG_PAGE = 1000  # log lines read from the database at a time


def plane(request: Request) -> ControlPlane:
    return request.app.state.plane  # type: ignore[no-any-return]


def identity(request: Request) -> Identity:
    return request.scope["identity"]  # type: ignore[no-any-return]


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body, checked against model (422 naming the fields at fault)."""
    data = await request.body()
    if len(data) > limits.max_json_bytes():  # it may have come in labelled as msgpack
        raise limits.BodyTooLarge(limits.body_limit({"method": "POST", "path": "",
                                                     "headers": []})[1])
    # Every JSON value but the first follows a ',' or opens with '[' or '{': the count bounds
    # the objects the body can become, cheaply, before it is parsed.
    if data.count(b",") + data.count(b"[") + data.count(b"{") > MAX_ITEMS:
        raise too_many("The request body")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise invalid("The request body is not valid JSON; send a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return validate(model, body)


def check_size(size: int) -> None:
    """Refuse a request body larger than the largest payload plus room for its envelope."""
    if size > wire.max_payload_bytes() + 1024 * 1024:
        raise ApiError(413, "InvalidError", "The request is larger than the server accepts.")


# A body unpacks to many times its size in objects (an empty list is 56 bytes of Python for one
# byte of msgpack): at most this many items in all, so a body's objects stay within ~100 MB.
MAX_ITEMS = 1_000_000


def too_many(what: str) -> ApiError:
    return ApiError(413, "InvalidError", f"{what} holds more than {MAX_ITEMS:,} items; send "
                                         "them in several requests.")


def count_items(data: bytes, limit: int) -> int:
    """How many values a msgpack document holds, counted without building them (scalars are
    skipped in C), stopping once past limit: so a body that would unpack to too many objects is
    refused before a single one exists."""
    reader = msgpack.Unpacker(max_buffer_size=len(data) + 1, max_array_len=limit,
                              max_map_len=limit, max_str_len=len(data), max_bin_len=len(data))
    reader.feed(data)
    pending, seen = 1, 0
    while pending and seen <= limit:
        pending -= 1
        kind = data[reader.tell()]
        if 0x90 <= kind <= 0x9F or kind in (0xDC, 0xDD):  # an array: its items are next
            size = reader.read_array_header()
        elif 0x80 <= kind <= 0x8F or kind in (0xDE, 0xDF):  # a map: its keys and values
            size = 2 * reader.read_map_header()
        else:
            reader.skip()
            continue
        pending += size
        seen += size
    return seen


def unpack_map(data: bytes, what: str = "The request body") -> dict[str, Any]:
    check_size(len(data))
    try:
        if count_items(data, MAX_ITEMS) > MAX_ITEMS:
            raise too_many(what)
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except ApiError:
        raise
    except Exception:
        raise invalid(f"{what} is not valid msgpack.") from None
    if not isinstance(body, dict):
        raise invalid(f"{what} must be a msgpack map.")
    return body


async def msgpack_body(request: Request, model: type[M]) -> M:
    """The request's msgpack body, checked against model (422 naming the fields at fault)."""
    return validate(model, unpack_map(await request.body()))


def query(request: Request, model: type[M]) -> M:
    """The request's query parameters, checked against model."""
    return validate(model, dict(request.query_params), "The query")


def packed(message: Any, status: int = 200) -> Response:
    return Response(wire.pack(message), status_code=status, media_type=wire.MSGPACK)


# ---- apps --------------------------------------------------------------------------------


async def create_app(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateApp)
    app_id, created = await apps.create(plane(request), identity(request).workspace_id,
                                        body.name, body.mode)
    return JSONResponse({"app_id": app_id, "created": created})


async def register_functions(request: Request) -> JSONResponse:
    body = await json_body(request, rq.RegisterFunctions)
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    entries = [(f.name, f.spec) for f in body.functions]
    return JSONResponse(await apps.register_functions(cp, who, app, entries, body.tag))


async def heartbeat(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    await apps.heartbeat(cp, app)
    return JSONResponse({"state": app.state})


async def stop_app(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    if app.state != "stopped":
        await cp.stop_app(app.id, "stopped by request")
    return JSONResponse({"app_id": app.id, "state": "stopped"})


async def list_apps(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    limit = query(request, rq.ListApps).limit
    return JSONResponse({"apps": await apps.list_apps(cp, who.workspace_id, limit)})


async def app_history(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    return JSONResponse({"app_id": app.id, "name": app.name,
                         "events": await apps.history(cp, app)})


async def app_logs(request: Request) -> StreamingResponse:
    cp, who = plane(request), identity(request)
    app = await apps.app_row(cp, who, request.path_params["app_id"])
    q = query(request, rq.AppLogs)
    follow, after = q.follow in ("1", "true"), q.after
    live_app = apps.is_live(cp, app)

    async def lines() -> AsyncIterator[bytes]:
        queue = cp.logs.follow(app.id) if follow and live_app else None
        last = after
        try:
            # A line emitted just before we began following may still wait for its commit:
            # let it land, so the history below holds it.
            await cp.logs.stored()
            while True:  # page by page, so a long history never sits in memory at once
                page = await cp.logs.history(app.id, after=last, limit=LOG_PAGE)
                for line in page:
                    last = line.id
                    yield (json.dumps(line.to_json()) + "\n").encode()
                if len(page) < LOG_PAGE:
                    break
            if queue is None:
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield b"\n"  # keeps the connection alive; clients skip blank lines
                    continue
                if item is None:
                    return
                if item.id > last:
                    last = item.id
                    yield (json.dumps(item.to_json()) + "\n").encode()
        finally:
            if queue is not None:
                cp.logs.unfollow(app.id, queue)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# ---- functions ---------------------------------------------------------------------------


async def lookup_function(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    q = query(request, rq.LookupFunction)
    return JSONResponse(await apps.lookup_function(cp, who, q.name, q.app_id, q.app))


async def create_variant(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateVariant)
    cp, who = plane(request), identity(request)
    return JSONResponse(await apps.create_variant(cp, who, request.path_params["function_id"],
                                                  body.options))


routes = [
    Route("/v1/apps", create_app, methods=["POST"]),
    Route("/v1/apps", list_apps, methods=["GET"]),
    Route("/v1/apps/{app_id}/functions", register_functions, methods=["POST"]),
    Route("/v1/apps/{app_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/apps/{app_id}/stop", stop_app, methods=["POST"]),
    Route("/v1/apps/{app_id}/history", app_history, methods=["GET"]),
    Route("/v1/apps/{app_id}/logs", app_logs, methods=["GET"]),
    Route("/v1/functions/lookup", lookup_function, methods=["GET"]),
    Route("/v1/functions/{function_id}/variants", create_variant, methods=["POST"]),
]
