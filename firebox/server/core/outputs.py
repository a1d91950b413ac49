"""The output log of each call: outputs get a per-call sequence number and reach callers only
once committed, so a caller that resumes after a restart never misses or repeats one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ... import wire
from ...store import schema as s
from ...store.db import Database

FAST_FLUSH_DELAY = 0.02
# Outputs emitted but not yet committed, at most: past this the scheduler hands out no more
# inputs until a commit catches up. A crash runs these inputs again, so this bounds the work a
# kill -9 redoes (with the inputs containers hold) at a fraction of a second of fan-out.
MAX_UNSTORED = 512
MARK_DONE = (s.inputs.update().where(s.inputs.c.id == sa.bindparam("done_id"))
             .values(state=wire.DONE))


@dataclass
class CallLog:
    next_seq: int
    committed_seq: int
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    touched: float = field(default_factory=time.monotonic)
    # A fast log (one remote call) hands outputs to its caller before they commit: the caller
    # takes exactly one output and stops, so a crash can at worst run the input again.
    fast: bool = False
    uncommitted: list[tuple[int, int, str, bytes | None]] = field(default_factory=list)
    # A fast call's own rows (the call and its input) wait to be written with its output, in
    # one commit: until it has its output its caller holds the input and sends it again if the
    # server goes away, so the rows only have to be stored before the server says anything else
    # (see settle). The workspace answers who owns the call meanwhile.
    unwritten: tuple[dict[str, Any], dict[str, Any]] | None = None  # (call row, input row)
    # Who made the call, so the owner of a call is known without reading the database; None
    # only for a log of a call that is not stored (yet).
    workspace_id: str | None = None
    function_id: str | None = None

    @property
    def visible_seq(self) -> int:
        return self.uncommitted[-1][0] if self.uncommitted else self.committed_seq

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)


class OutputLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: dict[str, CallLog] = {}
        self._rows: list[dict[str, Any]] = []
        self._fast_rows: list[dict[str, Any]] = []
        self._done: list[str] = []
        self._logs: list[tuple[CallLog, int]] = []
        self._first: list[tuple[dict[str, Any], dict[str, Any]]] = []  # fast calls' rows
        self._flush_handle: asyncio.Handle | None = None
        self._flush_is_soon = False
        self.unstored = 0  # outputs emitted whose commit has not finished
        self.held = False  # whether the scheduler was told to wait for a commit
        self.on_caught_up: Callable[[], None] | None = None  # the scheduler's dispatch again

    def has_room(self) -> bool:
        """Whether inputs may be handed out: few enough outputs wait for their commit. When
        not, on_caught_up is called once a commit brings them under the bound."""
        if self.unstored < MAX_UNSTORED:
            return True
        self.held = True
        return False

    async def open(self, call_id: str) -> CallLog:
        log = self.calls.get(call_id)
        if log is not None:
            return log
        last_seq = (sa.select(sa.func.max(s.outputs.c.seq))
                    .where(s.outputs.c.call_id == call_id).scalar_subquery())
        rows = await self.db.read(
            sa.select(last_seq, s.calls.c.workspace_id, s.calls.c.function_id)
            .select_from(s.calls).where(s.calls.c.id == call_id)
        )
        last, workspace_id, function_id = rows[0] if rows else (0, None, None)
        found = CallLog(next_seq=(last or 0) + 1, committed_seq=last or 0,
                        workspace_id=workspace_id, function_id=function_id)
        return self.calls.setdefault(call_id, found)

    def open_fast(self, call_id: str, workspace_id: str, call_row: dict[str, Any],
                  input_row: dict[str, Any]) -> CallLog:
        """The log of a new one-input remote call whose rows wait for its output."""
        log = self.calls[call_id] = CallLog(next_seq=1, committed_seq=0, fast=True,
                                            unwritten=(call_row, input_row),
                                            workspace_id=workspace_id,
                                            function_id=call_row["function_id"])
        return log

    async def settle(self, call_id: str) -> None:
        """Store a fast call's rows now, if they still wait for its output."""
        log = self.calls.get(call_id)
        if log is not None and log.unwritten is not None:
            rows, log.unwritten = [log.unwritten], None
            await self.db.write(lambda conn: self._insert_fast(conn, rows))

    def note_attempts(self, call_id: str, attempts: int) -> bool:
        """Record a retried fast call's attempts in its unwritten input row; False when its
        rows are in the database already (update them there)."""
        log = self.calls.get(call_id)
        if log is None or log.unwritten is None:
            return False
        call_row, input_row = log.unwritten
        log.unwritten = (call_row, {**input_row, "attempts": attempts})
        return True

    async def _insert_fast(self, conn: AsyncConnection,
                           rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        # Ignoring conflicts: a retry that came in between may have stored them already.
        await conn.execute(self.db.insert_ignore(s.calls), [c for c, _ in rows])
        await conn.execute(self.db.insert_ignore(s.inputs), [i for _, i in rows])

    def emit(self, call_id: str, idx: int, input_id: str, status: str, data: bytes | None,
             container_id: str | None = None, exec_seconds: float | None = None) -> None:
        """Append an output; terminal ones also mark the input done, in the same commit."""
        log = self.calls[call_id]
        seq = log.next_seq
        log.next_seq += 1
        self.unstored += 1
        log.touched = time.monotonic()
        # A fast call's outputs skip a row already there, as its id may have been taken: a
        # replayed or misused id then costs only its own output, never the whole commit.
        (self._fast_rows if log.fast else self._rows).append({
            "call_id": call_id, "seq": seq, "idx": idx, "status": status, "data": data,
            "created_at": time.time(), "container_id": container_id,
            "exec_seconds": exec_seconds,
        })
        if log.unwritten is not None:  # its rows go in with this output, done if it is final
            call_row, input_row = log.unwritten
            log.unwritten = None
            if status in wire.TERMINAL:
                input_row = {**input_row, "state": wire.DONE}
            self._first.append((call_row, input_row))
        elif status in wire.TERMINAL:
            self._done.append(input_id)
        self._logs.append((log, seq))
        self._schedule_flush(soon=not log.fast)
        if log.fast:
            log.uncommitted.append((seq, idx, status, data))
            log.wake()

    def _schedule_flush(self, soon: bool) -> None:
        """Flush at the next turn of the loop, or after FAST_FLUSH_DELAY when every output
        waiting is a fast call's: its caller has it already, so only the history waits, and
        back-to-back calls share one commit."""
        if self._flush_handle is not None and (self._flush_is_soon or not soon):
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        loop = asyncio.get_running_loop()
        self._flush_is_soon = soon
        self._flush_handle = (loop.call_soon(self._flush) if soon
                              else loop.call_later(FAST_FLUSH_DELAY, self._flush))

    async def commit_pending(self) -> None:
        """Commit every output emitted so far: for reports that read them from the database."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        await self.db.barrier()

    def _flush(self) -> None:
        """Write every output emitted since the last flush with a few statements."""
        self._flush_handle = None
        rows, self._rows = self._rows, []
        fast_rows, self._fast_rows = self._fast_rows, []
        done, self._done = self._done, []
        logs, self._logs = self._logs, []
        first, self._first = self._first, []

        async def op(conn: AsyncConnection) -> None:
            if first:
                await self._insert_fast(conn, first)
            if rows:
                await conn.execute(s.outputs.insert(), rows)
            if fast_rows:
                await conn.execute(self.db.insert_ignore(s.outputs), fast_rows)
            if done:
                await conn.execute(MARK_DONE, [{"done_id": i} for i in done])

        fut = asyncio.ensure_future(self.db.write(op))

        def committed(f: asyncio.Future[Any]) -> None:
            for log, seq in logs:
                self._committed(log, seq, f)
            # A failed commit frees its room too: those outputs are not coming.
            self.unstored -= len(logs)
            if self.held and self.unstored < MAX_UNSTORED:
                self.held = False
                if self.on_caught_up is not None:
                    self.on_caught_up()

        fut.add_done_callback(committed)

    def _committed(self, log: CallLog, seq: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        log.committed_seq = max(log.committed_seq, seq)
        log.uncommitted = [o for o in log.uncommitted if o[0] > log.committed_seq]
        log.wake()

    async def read(
        self, call_id: str, after: int, wait: float, limit: int = 10_000
    ) -> list[tuple[int, int, str, bytes | None]]:
        """Committed outputs with seq > after, waiting up to `wait` seconds for the first one."""
        log = await self.open(call_id)
        log.touched = time.monotonic()
        if log.visible_seq <= after and wait > 0:
            w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            log.waiters.append(w)
            try:
                await asyncio.wait_for(w, wait)
            except TimeoutError:
                pass
            finally:
                if w in log.waiters:
                    log.waiters.remove(w)
        early = [o for o in log.uncommitted if o[0] > after]
        if early:
            return early
        if log.committed_seq <= after:
            return []
        rows = await self.db.read(
            sa.select(s.outputs.c.seq, s.outputs.c.idx, s.outputs.c.status, s.outputs.c.data)
            .where(s.outputs.c.call_id == call_id, s.outputs.c.seq > after)
            .order_by(s.outputs.c.seq)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def forget_idle(self, older_than: float, live: set[str]) -> None:
        """Drop the memory of calls nobody waits on and no live input will write to."""
        cutoff = time.monotonic() - older_than
        for call_id, log in list(self.calls.items()):
            idle = log.touched < cutoff and not log.waiters and call_id not in live
            if idle and log.next_seq - 1 == log.committed_seq and log.unwritten is None:
                del self.calls[call_id]
