"""Calls: inputs in, outputs out, cancellation; over HTTP and over the call channel.

The call channel (`/v1/calls/ws`) is one WebSocket per client that carries the two
latency-bound requests, accepting a call's inputs and reading its outputs, as numbered frames.
It does what the HTTP routes do, without a request's headers, routing and middleware each time:
a warm call's round trip is mostly that transport. Replies may come back out of order (a long
poll waits while later requests are answered); errors carry the HTTP status and type they
would have had.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ... import wire
from ...store import schema as s
from ...wire import ids
from ..core.errors import ApiError, invalid, not_found
from ..core.plane import ControlPlane
from ..core.scheduler import Input
from ..core.workspaces import Identity
from . import limits
from . import requests as rq
from .apps import identity, packed, plane, unpack_map
from .requests import MAX_WAIT, validate

log = logging.getLogger("firebox.calls")
BUDGET_WAIT = 30.0  # seconds between looks at a full budget while a channel is held back

CALL_OWNER = (sa.select(s.calls.c.workspace_id, s.calls.c.function_id)
              .where(s.calls.c.id == sa.bindparam("call_id")))


async def put_inputs(request: Request) -> Response:
    body = unpack_map(await request.body())
    attempt = request.headers.get("x-firebox-attempt", "0") != "0"
    return packed(await accept_inputs(plane(request), identity(request), body, attempt))


def foreign_call(call_id: str) -> ApiError:
    return not_found(f"No function call '{call_id}' in this workspace.")


async def accept_inputs(cp: ControlPlane, who: Identity, raw: dict[str, Any], retried: bool
                        ) -> dict[str, Any]:
    """Create a call (idempotently) and accept a batch of its inputs; optionally wait for output.

    The client names the call and numbers the inputs, so a request retried after a lost
    response or a server restart adds nothing twice. A call id is only ever used by the
    workspace, and the function, that made the call.
    """
    body = validate(rq.PutInputs, raw)
    call_id = body.call_id
    fn = await cp.load_function(body.function_id)
    if fn is None or fn.workspace_id != who.workspace_id:
        raise not_found("No such function in this workspace; look it up again by name.")
    if fn.app_id in cp.scheduler.stopped_apps:
        raise ApiError(
            409,
            "InvalidError",
            f"The app of '{fn.name}' is stopped; deploy it again or call it inside `app.run()`.",
        )
    known_log = cp.outputs.calls.get(call_id)
    if known_log is not None and known_log.workspace_id is not None:
        if known_log.workspace_id != who.workspace_id:
            raise foreign_call(call_id)
        if known_log.function_id != fn.id:
            raise invalid(f"Call '{call_id}' is a call of another function; make a new call.")
    items = body.inputs
    params = body.params
    pool_key = hashlib.sha256(params).hexdigest()[:16] if params else ""
    method = body.method
    now = time.time()
    call_row = {
        "id": call_id, "function_id": fn.id, "workspace_id": who.workspace_id,
        "kind": body.kind, "method": method, "params": params,
        "pool_key": pool_key, "closed": False, "cancelled": False, "created_at": now,
    }

    def input_row(i: int, args: bytes) -> dict[str, Any]:
        return {"id": ids.input_id(call_id, i), "call_id": call_id, "idx": i, "args": args,
                "state": wire.PENDING, "attempts": 0, "created_at": now}

    def submit(fresh: list[tuple[int, bytes]]) -> None:
        pool = cp.scheduler.pool(fn, pool_key, params)
        cp.scheduler.submit(
            pool,
            [Input(ids.input_id(call_id, i), call_id, i, a, 0, pool, method) for i, a in fresh],
        )

    wait = min(body.wait, MAX_WAIT)
    if (not retried and body.kind == "remote" and len(items) == 1 and known_log is None
            and ids.call_id_is_tagged(call_id, cp.vault.call_key(fn.id))):
        # A new remote call runs at once; its rows are written with its output, in one commit.
        # Its id carries the tag of the function's key, so no other workspace made it; its
        # caller waits for the output and sends the input again if the server goes away first,
        # so nothing is lost; before any answer without the output, the rows are stored.
        fresh = [items[0]]
        cp.outputs.open_fast(call_id, who.workspace_id, call_row, input_row(*fresh[0]))
        submit(fresh)
        outputs = await cp.outputs.read(call_id, 0, wait) if wait else []
        if not any(status in wire.TERMINAL for _seq, _idx, status, _data in outputs):
            await cp.outputs.settle(call_id)
        return {"call_id": call_id, "accepted": 1, "outputs": outputs}

    async def op(conn: AsyncConnection) -> list[tuple[int, bytes]]:
        existed = (await conn.execute(CALL_OWNER, {"call_id": call_id})).first()
        known: set[int] = set()
        if existed is None:
            await conn.execute(s.calls.insert(), call_row)
        elif existed.workspace_id != who.workspace_id:
            raise foreign_call(call_id)
        elif existed.function_id != fn.id:
            raise invalid(f"Call '{call_id}' is a call of another function; make a new call.")
        elif items:
            idxs = [i for i, _ in items]
            known = {r[0] for r in await conn.execute(
                sa.select(s.inputs.c.idx).where(s.inputs.c.call_id == call_id,
                                                s.inputs.c.idx.in_(idxs)))}
        fresh = [(i, a) for i, a in items if i not in known]
        if fresh:
            await conn.execute(s.inputs.insert(), [input_row(i, a) for i, a in fresh])
        return fresh

    await cp.outputs.settle(call_id)  # a retry finds the first attempt's rows, not runs it twice
    fresh = await cp.db.write(op)
    await cp.outputs.open(call_id)
    if fresh:
        submit(fresh)
    outputs = await cp.outputs.read(call_id, 0, wait) if wait else []
    return {"call_id": call_id, "accepted": len(fresh), "outputs": outputs}


async def call_owner(cp: ControlPlane, who: Identity, call_id: str) -> None:
    log = cp.outputs.calls.get(call_id)
    if log is not None and log.workspace_id is not None:  # a fast call's rows may be unwritten
        if log.workspace_id != who.workspace_id:
            raise foreign_call(call_id)
        return
    rows = await cp.db.read(sa.select(s.calls.c.workspace_id).where(s.calls.c.id == call_id))
    if not rows or rows[0][0] != who.workspace_id:
        raise foreign_call(call_id)


async def get_outputs(request: Request) -> Response:
    body = unpack_map(await request.body())
    call_id = request.path_params["call_id"]
    return packed(await read_outputs(plane(request), identity(request), call_id, body))


async def read_outputs(cp: ControlPlane, who: Identity, call_id: str, raw: dict[str, Any]
                       ) -> dict[str, Any]:
    """A call's outputs after `after`, long-polling up to `wait` seconds for the first."""
    body = validate(rq.GetOutputs, raw)
    await call_owner(cp, who, call_id)
    outputs = await cp.outputs.read(call_id, body.after, min(body.wait, MAX_WAIT))
    return {"outputs": outputs}


async def cancel_call(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    call_id = request.path_params["call_id"]
    await call_owner(cp, who, call_id)
    await cp.outputs.open(call_id)
    await cp.outputs.settle(call_id)  # its rows are there to be marked cancelled
    cancelled = cp.scheduler.cancel_call(call_id)
    await cp.db.write(
        lambda conn: conn.execute(
            s.calls.update().where(s.calls.c.id == call_id).values(cancelled=True)
        )
    )
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
        try:
            message = unpack_map(raw, "A call channel frame")
            if not isinstance(message.get("body"), dict):
                raise invalid("A call channel frame is a map with 'id', 'op' and a map 'body'.")
            rid = message.get("id")
            op, body = message.get("op"), message["body"]
            if op == "call":
                reply = {"id": rid, "ok": await accept_inputs(cp, who, body,
                                                              bool(message.get("retried")))}
            elif op == "outputs":
                reply = {"id": rid, "ok": await read_outputs(cp, who, str(message.get("call_id")),
                                                             body)}
            elif op == "ping":  # the channel's own round trip, for clients and benchmarks
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
]
