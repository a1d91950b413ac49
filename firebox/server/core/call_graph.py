"""A call's graph: its inputs, the calls their code made (each call names the input it was made
from), those calls' inputs, and so on down, as FunctionCall.get_call_graph reads it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ... import wire
from ...store import schema as s
from ...store.db import Database
from ...wire import calls as wire_calls
from . import failures
from .errors import ApiError, invalid
from .functions import FunctionRecord
from .outputs import OutputLog
from .scheduler import Scheduler

CHUNK = 500  # ids per IN (...) list: well under every database's limit on bound parameters


@dataclass
class _Call:
    id: str
    function_id: str
    method: str | None
    cancelled: bool


def too_large(call_id: str) -> ApiError:
    return invalid(f"The call graph of '{call_id}' has more than {wire_calls.MAX_GRAPH_INPUTS} "
                   "inputs, more than the server builds; read its outputs with "
                   "FunctionCall.get() instead.")


class CallGraph:
    """Builds one call's graph from the database, with what is only in memory so far: the
    rows of new remote calls, written with their output, and which container runs an input."""

    def __init__(self, db: Database, outputs: OutputLog, scheduler: Scheduler,
                 load_function: Callable[[str], Awaitable[FunctionRecord | None]],
                 workspace_id: str) -> None:
        self.db, self.outputs, self.scheduler = db, outputs, scheduler
        self.load_function = load_function
        self.workspace_id = workspace_id
        # Rows of remote calls that wait for their output to be written: (call row, input row).
        self.unwritten = [log.unwritten for log in outputs.calls.values()
                          if log.unwritten is not None and log.workspace_id == workspace_id]
        self.names: dict[str, tuple[str, str]] = {}

    async def build(self, call_id: str) -> wire_calls.GraphReply:
        await self.outputs.commit_pending()  # every output emitted so far is in the database
        found: list[wire_calls.GraphInput] = []
        seen = {call_id}
        level = await self._calls(sa.select(*_CALL_COLUMNS).where(s.calls.c.id == call_id),
                                  lambda row: row["id"] == call_id)
        parents: dict[str, str | None] = {c.id: None for c in level}
        while level:
            room = wire_calls.MAX_GRAPH_INPUTS - len(found)
            inputs = await self._inputs([c.id for c in level], room + 1)
            if len(inputs) > room:
                raise too_large(call_id)
            outcomes = await self._outcomes([c.id for c in level])
            by_id = {c.id: c for c in level}
            for input_id, of_call, idx in inputs:
                call = by_id[of_call]
                status, task_id = outcomes.get((of_call, idx), (None, None))
                if status is None:
                    status = wire.CANCELLED if call.cancelled else wire_calls.PENDING
                    task_id = self._running_on(of_call, input_id)
                name, module = await self._names(call)
                found.append({"input_id": input_id, "function_call_id": of_call,
                              "parent_input_id": parents.get(of_call), "task_id": task_id or "",
                              "status": status, "function_name": name, "module_name": module})
            level = [c for c in await self._children([i for i, _, _ in inputs], parents)
                     if c.id not in seen]
            seen.update(c.id for c in level)
        return {"inputs": found}

    async def _calls(self, query: sa.Select[Any], in_memory: Callable[[dict[str, Any]], bool]
                     ) -> list[_Call]:
        rows = [dict(r._mapping) for r in await self.db.read(
            query.where(s.calls.c.workspace_id == self.workspace_id))]
        stored = {r["id"] for r in rows}
        rows += [c for c, _ in self.unwritten if c["id"] not in stored and in_memory(c)]
        return [_Call(r["id"], r["function_id"], r["method"], bool(r["cancelled"]))
                for r in rows]

    async def _children(self, input_ids: list[str], parents: dict[str, str | None]
                        ) -> list[_Call]:
        """The calls the inputs' code made, noting each one's parent input in parents."""
        wanted = set(input_ids)
        found: list[_Call] = []
        for chunk in _chunks(input_ids):
            query = (sa.select(*_CALL_COLUMNS, s.calls.c.parent_input_id)
                     .where(s.calls.c.parent_input_id.in_(chunk))
                     .order_by(s.calls.c.created_at))
            rows = await self.db.read(query.where(s.calls.c.workspace_id == self.workspace_id))
            for r in rows:
                parents[r.id] = r.parent_input_id
                found.append(_Call(r.id, r.function_id, r.method, bool(r.cancelled)))
        stored = {c.id for c in found}
        for call_row, _ in self.unwritten:
            if call_row.get("parent_input_id") in wanted and call_row["id"] not in stored:
                parents[call_row["id"]] = call_row["parent_input_id"]
                found.append(_Call(call_row["id"], call_row["function_id"], call_row["method"],
                                   False))
        return found

    async def _inputs(self, call_ids: list[str], limit: int) -> list[tuple[str, str, int]]:
        """(input id, call id, index) of the calls' inputs, at most limit of them."""
        found: list[tuple[str, str, int]] = []
        for chunk in _chunks(call_ids):
            rows = await self.db.read(
                sa.select(s.inputs.c.id, s.inputs.c.call_id, s.inputs.c.idx)
                .where(s.inputs.c.call_id.in_(chunk))
                .order_by(s.inputs.c.call_id, s.inputs.c.idx).limit(limit - len(found)))
            found += [(r[0], r[1], r[2]) for r in rows]
            if len(found) >= limit:
                return found
        stored = {i for i, _, _ in found}
        wanted = set(call_ids)
        found += [(i["id"], i["call_id"], i["idx"]) for _, i in self.unwritten
                  if i["call_id"] in wanted and i["id"] not in stored]
        order = {c: n for n, c in enumerate(call_ids)}
        found.sort(key=lambda i: (order[i[1]], i[2]))
        return found[:limit]

    async def _outcomes(self, call_ids: list[str]) -> dict[tuple[str, int], tuple[str, str]]:
        """(call id, index) -> (terminal status, container) of the calls' finished inputs."""
        found: dict[tuple[str, int], tuple[str, str]] = {}
        # A failure that reached no container: what it says tells why (read only for those).
        never_ran = sa.and_(s.outputs.c.container_id.is_(None),
                            s.outputs.c.status == wire.FAILURE)
        for chunk in _chunks(call_ids):
            rows = await self.db.read(
                sa.select(s.outputs.c.call_id, s.outputs.c.idx, s.outputs.c.status,
                          s.outputs.c.container_id,
                          sa.case((never_ran, s.outputs.c.data), else_=sa.null()))
                .where(s.outputs.c.call_id.in_(chunk), s.outputs.c.status.in_(wire.TERMINAL)))
            for call_id, idx, status, container_id, data in rows:
                if data is not None:
                    status = _NOT_RUN.get(bytes(data), wire_calls.INIT_FAILURE)
                found[(call_id, idx)] = (status, container_id or "")
        return found

    def _running_on(self, call_id: str, input_id: str) -> str:
        for inp in self.scheduler.by_call.get(call_id, ()):
            if inp.id == input_id and inp.runs_in is not None:
                return inp.runs_in.id
        return ""

    async def _names(self, call: _Call) -> tuple[str, str]:
        """(function name, module name) of a call: a method's name is Class.method."""
        key = f"{call.function_id}.{call.method or ''}"
        if key not in self.names:
            fn = await self.load_function(call.function_id)
            name = fn.name if fn is not None else ""
            if call.method:
                name = f"{name}.{call.method}"
            module = str(fn.spec.get("module") or "") if fn is not None else ""
            self.names[key] = (name, module)
        return self.names[key]


# Failures of inputs that reached no container but for a reason other than a container that
# could not start (an import error, an @enter that raised, a startup timeout): their status.
_NOT_RUN = {failures.app_stopped(): wire.CANCELLED, failures.arguments_gone(): wire.FAILURE}
_CALL_COLUMNS = (s.calls.c.id, s.calls.c.function_id, s.calls.c.method, s.calls.c.cancelled)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
