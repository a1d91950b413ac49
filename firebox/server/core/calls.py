"""Calls: the one way a call is created, its outputs read, or it is cancelled.

Every road a call comes by goes through here: a client's call over the API or its call channel
(by the id the client chose), a schedule's run (by an id the control plane makes) and a web
request from the ingress (a call of one input that is never stored).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ... import wire
from ...store import schema as s
from ...store.db import Database
from ...wire import calls as wire_calls
from ...wire import ids
from .call_graph import CallGraph
from .dispatch import Router
from .errors import ApiError, invalid, not_found
from .functions import FunctionRecord
from .outputs import OutputLog
from .pools import Input, WebExchange
from .scheduler import Scheduler
from .vault import Vault

CALL_OWNER = (sa.select(s.calls.c.workspace_id, s.calls.c.function_id)
              .where(s.calls.c.id == sa.bindparam("call_id")))


def foreign_call(call_id: str) -> ApiError:
    return not_found(f"No function call '{call_id}' in this workspace.")


def other_function(call_id: str) -> ApiError:
    return invalid(f"Call '{call_id}' is a call of another function; make a new call.")


class Calls:
    def __init__(self, db: Database, outputs: OutputLog, scheduler: Scheduler, vault: Vault,
                 load_function: Callable[[str], Awaitable[FunctionRecord | None]]) -> None:
        self.db = db
        self.outputs = outputs
        self.scheduler = scheduler
        self.vault = vault
        self.load_function = load_function

    def accepts(self, fn: FunctionRecord) -> bool:
        """Whether calls of fn are taken: its app is not stopped."""
        return fn.app_id not in self.scheduler.stopped_apps

    # ---- creating ----------------------------------------------------------------------------

    async def create(self, workspace_id: str, function_id: str, call_id: str,
                     inputs: list[tuple[int, bytes]], *, kind: str, method: str | None,
                     params: bytes | None, wait: float, retried: bool,
                     parent_input_id: str | None = None) -> wire_calls.CallReply:
        """Create a call (idempotently) and accept a batch of its inputs; wait up to `wait`
        seconds for a first output. parent_input_id names the input whose code made the call.

        The client names the call and numbers the inputs, so a request retried after a lost
        response or a server restart adds nothing twice. A call id is only ever used by the
        workspace, and the function, that made the call.
        """
        fn = await self.load_function(function_id)
        if fn is None or fn.workspace_id != workspace_id:
            raise not_found("No such function in this workspace; look it up again by name.")
        if not self.accepts(fn):
            raise ApiError(409, "InvalidError", f"The app of '{fn.name}' is stopped; deploy it "
                           "again or call it inside `app.run()`.")
        known_log = self.outputs.calls.get(call_id)
        if known_log is not None and known_log.workspace_id is not None:
            if known_log.workspace_id != workspace_id:
                raise foreign_call(call_id)
            if known_log.function_id != fn.id:
                raise other_function(call_id)
        pool_key = hashlib.sha256(params).hexdigest()[:16] if params else ""
        now = time.time()
        call_row = _call_row(call_id, fn, kind, method, params, pool_key, now, parent_input_id)
        if (not retried and kind == "remote" and len(inputs) == 1 and known_log is None
                and ids.call_id_is_tagged(call_id, self.vault.call_key(fn.id))):
            # A new remote call runs at once; its rows are written with its output, in one
            # commit. Its id carries the tag of the function's key, so no other workspace made
            # it; its caller waits for the output and sends the input again if the server goes
            # away first, so nothing is lost; before any answer without the output, the rows
            # are stored.
            self.outputs.open_fast(call_id, workspace_id, call_row,
                                   _input_row(call_id, *inputs[0], now))
            self._queue(fn, pool_key, params, call_id, method, inputs)
            outputs = await self.outputs.read(call_id, 0, wait) if wait else []
            if not any(status in wire.TERMINAL for _seq, _idx, status, _data in outputs):
                await self.outputs.settle(call_id)
            return {"call_id": call_id, "accepted": 1, "outputs": outputs}

        # A retry finds the first attempt's rows, and does not run it twice.
        await self.outputs.settle(call_id)
        fresh = await self.db.write(lambda conn: _store(conn, call_row, inputs, now))
        await self.outputs.open(call_id)
        if fresh:
            self._queue(fn, pool_key, params, call_id, method, fresh)
        outputs = await self.outputs.read(call_id, 0, wait) if wait else []
        return {"call_id": call_id, "accepted": len(fresh), "outputs": outputs}

    async def start(self, fn: FunctionRecord, kind: str) -> str:
        """Create a durable call of fn with no arguments, by a new id, and queue its input."""
        call_id = ids.new_call_id()
        args = wire.serialize(((), {}), "arguments")
        now = time.time()
        call_row = _call_row(call_id, fn, kind, None, None, "", now)
        fresh = await self.db.write(lambda conn: _store(conn, call_row, [(0, args)], now))
        await self.outputs.open(call_id)
        self._queue(fn, "", None, call_id, None, fresh)
        return call_id

    def serve(self, fn: FunctionRecord, method: str | None, request: dict[str, Any],
              exchange: WebExchange, router: Router | None = None) -> Input:
        """A web request or WebSocket as a call of one input, answered through exchange and
        never stored: its caller is there to send it again. A router, where given, picks the
        container of each of the pool's inputs from then on (the model gateway's)."""
        call_id = ids.new_web_call_id()
        # A class's web methods are served by its default instance: the pool without params.
        pool = self.scheduler.pool(fn, "", None)
        if router is not None:
            pool.router = router
        inp = Input(ids.web_input_id(call_id), call_id, 0, wire.pack(request), 0, pool, method,
                    web=exchange)
        self.scheduler.submit(pool, [inp])
        return inp

    def web_done(self, inp: Input, status: str, exec_seconds: float) -> None:
        """A request its caller served with the container itself (WebExchange.takes) ended:
        the container's place is free for the next."""
        if inp.container is not None:
            self.scheduler.on_outputs(inp.container, [
                {"id": inp.id, "status": status, "data": None, "exec": exec_seconds}])

    def socket_in(self, inp: Input, event: dict[str, Any]) -> None:
        """Pass a WebSocket client's event on to the container serving the socket."""
        self.scheduler.socket_in(inp, event)

    def _queue(self, fn: FunctionRecord, pool_key: str, params: bytes | None, call_id: str,
               method: str | None, inputs: list[tuple[int, bytes]]) -> None:
        pool = self.scheduler.pool(fn, pool_key, params)
        self.scheduler.submit(
            pool,
            [Input(ids.input_id(call_id, i), call_id, i, a, 0, pool, method) for i, a in inputs],
        )

    # ---- reading and cancelling --------------------------------------------------------------

    async def check_owner(self, workspace_id: str, call_id: str) -> None:
        """Raise NotFound unless the workspace made the call."""
        log = self.outputs.calls.get(call_id)
        if log is not None and log.workspace_id is not None:  # a fast call's rows may be unwritten
            if log.workspace_id != workspace_id:
                raise foreign_call(call_id)
            return
        rows = await self.db.read(sa.select(s.calls.c.workspace_id).where(s.calls.c.id == call_id))
        if not rows or rows[0][0] != workspace_id:
            raise foreign_call(call_id)

    async def read(self, workspace_id: str, call_id: str, after: int, wait: float
                   ) -> wire_calls.OutputsReply:
        """A call's outputs after `after`, long-polling up to `wait` seconds for the first."""
        await self.check_owner(workspace_id, call_id)
        return {"outputs": await self.outputs.read(call_id, after, wait)}

    async def graph(self, workspace_id: str, call_id: str) -> wire_calls.GraphReply:
        """The call's inputs, the calls their code made, and theirs, in the workspace."""
        await self.check_owner(workspace_id, call_id)
        return await CallGraph(self.db, self.outputs, self.scheduler, self.load_function,
                               workspace_id).build(call_id)

    async def cancel(self, workspace_id: str, call_id: str) -> int:
        """Cancel a call's inputs that have no output yet; returns how many there were."""
        await self.check_owner(workspace_id, call_id)
        await self.outputs.open(call_id)
        await self.outputs.settle(call_id)  # its rows are there to be marked cancelled
        cancelled = self.scheduler.cancel_call(call_id)
        await self.db.write(
            lambda conn: conn.execute(
                s.calls.update().where(s.calls.c.id == call_id).values(cancelled=True)
            )
        )
        return cancelled

    def cancel_web(self, call_id: str) -> None:
        """Cancel a web request's call, if it still runs: its client went away or was answered."""
        self.scheduler.cancel_call(call_id)


def _call_row(call_id: str, fn: FunctionRecord, kind: str, method: str | None,
              params: bytes | None, pool_key: str, now: float,
              parent_input_id: str | None = None) -> dict[str, Any]:
    return {
        "id": call_id, "function_id": fn.id, "workspace_id": fn.workspace_id,
        "kind": kind, "method": method, "params": params,
        "pool_key": pool_key, "closed": False, "cancelled": False, "created_at": now,
        "parent_input_id": parent_input_id,
    }


def _input_row(call_id: str, idx: int, args: bytes, now: float) -> dict[str, Any]:
    return {"id": ids.input_id(call_id, idx), "call_id": call_id, "idx": idx, "args": args,
            "state": wire.PENDING, "attempts": 0, "created_at": now}


async def _store(conn: AsyncConnection, call_row: dict[str, Any],
                 inputs: list[tuple[int, bytes]], now: float) -> list[tuple[int, bytes]]:
    """Store a call, if it is new, and those of its inputs that are: the inputs new to it."""
    call_id = call_row["id"]
    existed = (await conn.execute(CALL_OWNER, {"call_id": call_id})).first()
    known: set[int] = set()
    if existed is None:
        await conn.execute(s.calls.insert(), call_row)
    elif existed.workspace_id != call_row["workspace_id"]:
        raise foreign_call(call_id)
    elif existed.function_id != call_row["function_id"]:
        raise other_function(call_id)
    elif inputs:
        idxs = [i for i, _ in inputs]
        known = {r[0] for r in await conn.execute(
            sa.select(s.inputs.c.idx).where(s.inputs.c.call_id == call_id,
                                            s.inputs.c.idx.in_(idxs)))}
    fresh = [(i, a) for i, a in inputs if i not in known]
    if fresh:
        await conn.execute(s.inputs.insert(), [_input_row(call_id, i, a, now) for i, a in fresh])
    return fresh
