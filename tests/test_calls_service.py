"""The calls service (server/core/calls.py) against a real database and a FakeBackend: a call is
made once however often its request comes, only its workspace and function may use its id, and
each road a call comes by (a client's call, a schedule's run, a web request) is stored, or not,
as it should be; in milliseconds, with no process started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_scheduler import World, run, until, world

from firebox import wire
from firebox.server.core import failures
from firebox.server.core.calls import Calls
from firebox.server.core.errors import ApiError
from firebox.server.core.functions import FunctionRecord
from firebox.server.core.vault import Vault
from firebox.store import schema as s
from firebox.wire import calls as wire_calls
from firebox.wire import ids


def service(w: World, tmp_path: Path) -> Calls:
    async def load(function_id: str) -> FunctionRecord | None:
        return w.scheduler.functions.get(function_id)

    return Calls(w.db, w.outputs, w.scheduler, Vault(tmp_path, w.db), load)


def create(calls: Calls, fn: FunctionRecord, call_id: str, inputs: list[tuple[int, bytes]],
           kind: str = "map", workspace_id: str | None = None, **options: Any) -> Any:
    return calls.create(workspace_id or fn.workspace_id, fn.id, call_id, inputs, kind=kind,
                        method=None, params=None, wait=options.pop("wait", 0.0),
                        retried=options.pop("retried", False))


async def stored_inputs(w: World, call_id: str) -> list[int]:
    rows = await w.db.read(sa.select(s.inputs.c.idx).where(s.inputs.c.call_id == call_id)
                           .order_by(s.inputs.c.idx))
    return [r[0] for r in rows]


def test_a_call_sent_again_adds_no_input_twice(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            first = await create(calls, fn, "fc-again", [(0, b"a"), (1, b"b")])
            again = await create(calls, fn, "fc-again", [(1, b"b"), (2, b"c")], retried=True)
            assert (first["accepted"], again["accepted"]) == (2, 1)
            assert await stored_inputs(w, "fc-again") == [0, 1, 2]
            assert len(w.scheduler.by_call["fc-again"]) == 3

    run(main, tmp_path)


def test_a_call_id_is_only_its_workspaces_and_its_functions(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn, other_fn = service(w, tmp_path), w.function(), w.function()
            theirs = FunctionRecord("fu-theirs", "ap-2", "ws-2", "theirs", {})
            w.scheduler.functions[theirs.id] = theirs
            await create(calls, fn, "fc-mine", [(0, b"a")])
            with pytest.raises(ApiError, match="No function call 'fc-mine' in this workspace"):
                await create(calls, theirs, "fc-mine", [(1, b"b")])
            with pytest.raises(ApiError, match="a call of another function"):
                await create(calls, other_fn, "fc-mine", [(1, b"b")])
            with pytest.raises(ApiError, match="No such function in this workspace"):
                await create(calls, fn, "fc-other", [(0, b"a")], workspace_id="ws-2")
            with pytest.raises(ApiError, match="No function call 'fc-mine'"):
                await calls.read("ws-2", "fc-mine", 0, 0.0)
            with pytest.raises(ApiError, match="No function call 'fc-mine'"):
                await calls.cancel("ws-2", "fc-mine")
            assert await stored_inputs(w, "fc-mine") == [0]

    run(main, tmp_path)


def test_a_stopped_apps_functions_take_no_calls(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            w.scheduler.stop_app(fn.app_id)
            assert not calls.accepts(fn)
            with pytest.raises(ApiError, match="is stopped") as refused:
                await create(calls, fn, "fc-late", [(0, b"a")])
            assert refused.value.status == 409

    run(main, tmp_path)


def test_a_tagged_remote_call_runs_before_its_rows_are_written_with_its_output(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            call_id = ids.new_call_id(calls.vault.call_key(fn.id))
            reply = create(calls, fn, call_id, [(0, b"args")], kind="remote", wait=5.0)
            pending = asyncio.ensure_future(reply)
            [cid] = await w.launched(1)
            w.backend.ready(cid)
            [item] = await w.handed(cid)
            assert await stored_inputs(w, call_id) == []  # running, and nothing written yet
            w.backend.output(cid, item["id"], wire.SUCCESS, b"result")
            answer = await pending
            assert [o[2:] for o in answer["outputs"]] == [(wire.SUCCESS, b"result")]
            await w.outputs.commit_pending()
            rows = await w.db.read(sa.select(s.inputs.c.state).where(s.inputs.c.call_id == call_id))
            assert [r[0] for r in rows] == [wire.DONE]  # the rows came with the output

    run(main, tmp_path)


def test_a_remote_call_without_its_tag_is_stored_first(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            await create(calls, fn, "fc-untagged", [(0, b"args")], kind="remote")
            assert await stored_inputs(w, "fc-untagged") == [0]

    run(main, tmp_path)


def test_a_schedules_run_is_a_stored_call_of_no_arguments(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            call_id = await calls.start(fn, "schedule")
            rows = await w.db.read(sa.select(s.calls.c.kind, s.inputs.c.args, s.inputs.c.state)
                                   .join(s.inputs, s.inputs.c.call_id == s.calls.c.id)
                                   .where(s.calls.c.id == call_id))
            assert [(r.kind, wire.deserialize(r.args), r.state) for r in rows] == [
                ("schedule", ((), {}), wire.PENDING)]
            assert [inp.id for inp in w.scheduler.by_call[call_id]] == [ids.input_id(call_id, 0)]

    run(main, tmp_path)


def test_cancel_ends_a_calls_inputs_and_marks_it_cancelled(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            await create(calls, fn, "fc-stop", [(0, b"a"), (1, b"b")], kind="spawn_map")
            assert await calls.cancel(fn.workspace_id, "fc-stop") == 2
            read = await calls.read(fn.workspace_id, "fc-stop", 0, 2.0)
            assert {o[2] for o in read["outputs"]} == {wire.CANCELLED}
            rows = await w.db.read(sa.select(s.calls.c.cancelled).where(s.calls.c.id == "fc-stop"))
            assert rows[0][0] is True

    run(main, tmp_path)


class Exchange:
    started = False

    def __init__(self) -> None:
        self.finished: list[str] = []

    def event(self, message: dict[str, Any]) -> None:
        pass

    def finish(self, status: str, data: bytes | None) -> None:
        self.finished.append(status)


def test_a_web_request_is_a_call_that_is_never_stored(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            exchange = Exchange()
            inp = calls.serve(fn, None, {"method": "GET", "path": "/"}, exchange)
            assert inp.call_id.startswith(ids.WEB_CALL) and inp.web is exchange
            assert wire.unpack(inp.args or b"") == {"method": "GET", "path": "/"}
            calls.cancel_web(inp.call_id)
            calls.cancel_web(inp.call_id)  # a request answered or gone already: nothing to do
            await until(lambda: exchange.finished == [wire.CANCELLED])
            assert await w.db.read(sa.select(s.calls.c.id)) == []

    run(main, tmp_path)


def test_a_call_graph_keeps_to_its_workspace_ends_and_is_bounded(tmp_path, monkeypatch):
    async def main(tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            calls, fn = service(w, tmp_path), w.function()
            theirs = FunctionRecord("fu-theirs", "ap-2", "ws-2", "theirs", {})
            w.scheduler.functions[theirs.id] = theirs

            def make(call_id: str, n: int, parent: str, workspace_id: str = fn.workspace_id,
                     function_id: str = fn.id) -> Any:
                return calls.create(workspace_id, function_id, call_id,
                                    [(i, b"x") for i in range(n)], kind="map", method=None,
                                    params=None, wait=0.0, retried=False, parent_input_id=parent)

            # fc-root's parent is an input of fc-loop, made below it: a loop, walked once.
            await make("fc-root", 1, ids.input_id("fc-loop", 0))
            await make("fc-child", 2, ids.input_id("fc-root", 0))
            await make("fc-loop", 1, ids.input_id("fc-child", 1))
            # Another workspace naming one of ours as its call's parent is not in our graph.
            await make("fc-theirs", 1, ids.input_id("fc-root", 0), "ws-2", theirs.id)
            # Inputs that failed in no container: the app stopped; none could start.
            first, second = sorted(w.scheduler.by_call["fc-child"], key=lambda i: i.idx)
            w.scheduler.finish(first, wire.FAILURE, failures.app_stopped())
            w.scheduler.finish(second, wire.FAILURE, failures.not_started(OSError("no room")))
            graph = await calls.graph(fn.workspace_id, "fc-root")
            assert [(i["function_call_id"], i["parent_input_id"], i["status"])
                    for i in graph["inputs"]] == [
                ("fc-root", None, "pending"),
                ("fc-child", ids.input_id("fc-root", 0), "cancelled"),
                ("fc-child", ids.input_id("fc-root", 0), "init_failure"),
                ("fc-loop", ids.input_id("fc-child", 1), "pending"),
            ]
            with pytest.raises(ApiError, match="No function call 'fc-root' in this workspace"):
                await calls.graph("ws-2", "fc-root")
            monkeypatch.setattr(wire_calls, "MAX_GRAPH_INPUTS", 3)
            with pytest.raises(ApiError, match="'fc-root' has more than 3 inputs"):
                await calls.graph(fn.workspace_id, "fc-root")

    run(main, tmp_path)
