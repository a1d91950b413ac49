"""Calls over HTTP and over the call channel: inputs in, outputs out, cancellation.

The call channel (`/v1/calls/ws`) is one WebSocket per client that carries the two
latency-bound requests, accepting a call's inputs and reading its outputs, as numbered frames.
It does what the HTTP routes do, without a request's headers, routing and middleware each time:
a warm call's round trip is mostly that transport. Replies may come back out of order (a long
poll waits while later requests are answered); errors carry the HTTP status and type they
would have had. What a request does is the calls service's (core/calls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ... import wire
from ...wire import calls as wire_calls
from ..core.errors import ApiError, invalid
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from . import limits
from . import requests as rq
from .bodies import identity, packed, plane, unpack_map
from .requests import MAX_WAIT, validate

log = logging.getLogger("firebox.calls")
BUDGET_WAIT = 30.0  # seconds between looks at a full budget while a channel is held back


async def put_inputs(request: Request) -> Response:
    body = unpack_map(await request.body())
    attempt = request.headers.get("x-firebox-attempt", "0") != "0"
    return packed(await create_call(plane(request), identity(request), body, attempt))


def create_call(cp: ControlPlane, who: Identity, raw: dict[str, Any], retried: bool
                ) -> Coroutine[Any, Any, wire_calls.CallReply]:
    """Check a call request and hand it to the calls service: its coroutine, so that a warm
    call awaits no more than the service itself."""
    body = validate(rq.PutInputs, raw)
    return cp.calls.create(who.workspace_id, body.function_id, body.call_id, body.inputs,
                           kind=body.kind, method=body.method, params=body.params,
                           wait=min(body.wait, MAX_WAIT), retried=retried,
                           parent_input_id=body.parent_input_id)


async def get_outputs(request: Request) -> Response:
    body = unpack_map(await request.body())
    call_id = request.path_params["call_id"]
    return packed(await read_outputs(plane(request), identity(request), call_id, body))


def read_outputs(cp: ControlPlane, who: Identity, call_id: str, raw: dict[str, Any]
                 ) -> Coroutine[Any, Any, wire_calls.OutputsReply]:
    """Check an outputs request and hand it to the calls service (its coroutine)."""
    body = validate(rq.GetOutputs, raw)
    return cp.calls.read(who.workspace_id, call_id, body.after, min(body.wait, MAX_WAIT))


async def call_graph(request: Request) -> Response:
    return packed(await plane(request).calls.graph(identity(request).workspace_id,
                                                   request.path_params["call_id"]))


async def cancel_call(request: Request) -> JSONResponse:
    cancelled = await plane(request).calls.cancel(identity(request).workspace_id,
                                                  request.path_params["call_id"])
    return JSONResponse({"cancelled": cancelled})


async def call_channel(ws: WebSocket) -> None:
    """Serve one client's call channel: each request frame is handled in a task of its own."""
    cp: ControlPlane = ws.app.state.plane
    who: Identity = ws.scope["identity"]
    budget: limits.Budget = ws.app.state.body_budget
    await ws.accept()
    sending = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def answer(raw: bytes) -> None:
        rid = None
        reply: wire_calls.ChannelReply
        try:
            message = unpack_map(raw, "A call channel frame")
            if not isinstance(message.get("body"), dict):
                raise invalid("A call channel frame is a map with 'id', 'op' and a map 'body'.")
            rid = message.get("id")
            op, body = message.get("op"), message["body"]
            if op == wire_calls.CALL:
                reply = {"id": rid, "ok": await create_call(cp, who, body,
                                                            bool(message.get("retried")))}
            elif op == wire_calls.OUTPUTS:
                reply = {"id": rid, "ok": await read_outputs(cp, who, str(message.get("call_id")),
                                                             body)}
            elif op == wire_calls.PING:  # the channel's own round trip, for clients and benchmarks
                reply = {"id": rid, "ok": {}}
            else:
                raise invalid(f"Unknown call channel op {op!r}; use 'call', 'outputs' or 'ping'.")
        except ApiError as exc:
            reply = {"id": rid, "status": exc.status, "type": exc.kind, "error": exc.message}
        except Exception:
            log.exception("a call channel request failed")
            reply = {"id": rid, "status": 500, "type": "", "error": "Internal server error."}
        async with sending:
            await ws.send_bytes(wire.pack(reply))

    try:
        while True:
            raw = await ws.receive_bytes()
            # Frames share the request bodies' budget: while it is full this socket is not read
            # (TCP holds the sender back), so no number of frames adds up past it.
            share = limits.BODY_COPIES * len(raw)
            while not await budget.take(share, BUDGET_WAIT):
                pass
            task = asyncio.create_task(answer(raw))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            # Its frame, and what was made of it, are gone once it is answered (or cancelled).
            task.add_done_callback(lambda _task, share=share: budget.give(share))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in list(tasks):
            task.cancel()
        for task in list(tasks):
            with contextlib.suppress(BaseException):
                await task


routes = [
    Route("/v1/calls", put_inputs, methods=["POST"]),
    WebSocketRoute("/v1/calls/ws", call_channel),
    Route("/v1/calls/{call_id}/outputs", get_outputs, methods=["POST"]),
    Route("/v1/calls/{call_id}/cancel", cancel_call, methods=["POST"]),
    Route("/v1/calls/{call_id}/graph", call_graph, methods=["GET"]),
]
