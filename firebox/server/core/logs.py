"""Container output: stored per app for `firebox app logs`, and fanned out live to followers.

Memory stays bounded whatever a container prints. Lines wait for their commit in one buffer of at
most MAX_PENDING_BYTES; when it is full, the backend stops reading the printing containers'
pipes until a commit makes room, so a flood slows its printer down instead of filling the server
(nothing is dropped). A follower keeps at most FOLLOWER_BYTES of lines; one that reads slower
than the app prints takes the lines it missed from the database, in order, then goes on live.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...store.db import Database, WriteOp

log = logging.getLogger("firebox.logs")


@dataclass(frozen=True)
class LogLine:
    id: int
    app_id: str
    function: str
    container_id: str
    stream: str
    ts: float
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": self.function,
            "container_id": self.container_id,
            "stream": self.stream,
            "ts": self.ts,
            "text": self.text,
        }


TAIL_LINES = 20
TAIL_CHARS = 2000
RESTART_GAP = 1_000_000  # more lines than the buffer can ever hold
MB = 1024 * 1024
MAX_PENDING_BYTES = 4 * MB  # lines waiting for their commit, all containers together
COMMIT_BYTES = MB  # lines written in one commit, so outputs committed with them do not wait
LINE_COST = 400  # bytes a waiting line costs besides its text (its row, its LogLine)
MAX_LINE_CHARS = 64 * 1024  # a longer line is cut, saying so
FOLLOWER_BYTES = MB  # lines a follower holds before it falls back to the database
PAGE = 1000  # lines read from the database at a time


def _cost(text: str) -> int:
    return len(text) + LINE_COST


class LogHub:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.next_id = 1
        self.followers: dict[str, set[Follower]] = {}
        self.sources: dict[str, tuple[str, str]] = {}  # container id -> (app id, function)
        # Each container's last lines, for the error of one that dies before it is ready.
        self.tails: dict[str, deque[str]] = {}
        self._waiting: deque[dict[str, Any]] = deque()  # rows not yet handed to a commit
        self._pending_bytes = 0  # of lines not yet committed, those in a commit included
        self._stored_through = 0  # every line with an id up to this is committed
        self._writer: asyncio.Task[None] | None = None
        self._room: list[asyncio.Future[None]] = []  # pipes waiting for the buffer to drain
        self._stored: list[tuple[int, asyncio.Future[None]]] = []  # (line id, its waiter)

    async def open(self) -> None:
        rows = await self.db.read(sa.select(sa.func.max(s.logs.c.id)))
        # Followers may hold ids of lines a crash kept from the database: jump past them, so
        # a follower resuming from such an id misses no new line.
        self.next_id = (rows[0][0] or 0) + 1 + (RESTART_GAP if rows[0][0] else 0)
        self._stored_through = self.next_id - 1

    def register(self, container_id: str, app_id: str, function: str) -> None:
        self.sources[container_id] = (app_id, function)
        self.tails[container_id] = deque(maxlen=TAIL_LINES)

    def forget(self, container_id: str, after: float = 30.0) -> None:
        """Drop what is kept of a container that has exited, once its last output is in."""
        def drop() -> None:
            self.sources.pop(container_id, None)
            self.tails.pop(container_id, None)

        asyncio.get_running_loop().call_later(after, drop)

    def tail(self, container_id: str) -> str:
        """The container's last lines of output, for an error message."""
        text = "\n".join(self.tails.get(container_id, ()))
        return text[-TAIL_CHARS:]

    def container_output(self, container_id: str, stream: str, text: str
                         ) -> asyncio.Future[None] | None:
        """Take a line a container printed. While the lines waiting for their commit fill the
        buffer, returns a future that is done once there is room: the backend waits for it
        before it reads the container's pipe again."""
        app_id, function = self.sources.get(container_id, ("", ""))
        if not app_id:
            return None
        self._add(app_id, function, container_id, stream, text)
        tail = self.tails.get(container_id)
        if tail is not None:
            tail.append(text.rstrip("\n")[-TAIL_CHARS:])
        if self._pending_bytes < MAX_PENDING_BYTES:
            return None
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append(room)
        return room

    def system(self, app_id: str, function: str, container_id: str, text: str) -> None:
        self._add(app_id, function, container_id, "system", text)

    def _add(self, app_id: str, function: str, container_id: str, stream: str, text: str) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = f"{text[:MAX_LINE_CHARS]} [{len(text) - MAX_LINE_CHARS} more characters cut]"
        text = text.replace("\x00", "\ufffd")  # PostgreSQL's text cannot hold NUL
        line = LogLine(self.next_id, app_id, function, container_id, stream, time.time(), text)
        self.next_id += 1
        self._waiting.append({"id": line.id, "app_id": app_id, "container_id": container_id,
                              "function_name": function, "stream": stream, "ts": line.ts,
                              "text": text})
        self._pending_bytes += _cost(text)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="log-writer")
        for follower in self.followers.get(app_id, ()):
            follower.push(line)

    async def _write(self) -> None:
        """Commit waiting lines a batch at a time, one commit in flight, oldest first."""
        try:
            while self._waiting:
                batch: list[dict[str, Any]] = []
                size = 0
                while self._waiting and size < COMMIT_BYTES:
                    row = self._waiting.popleft()
                    batch.append(row)
                    size += _cost(row["text"])
                try:
                    await self.db.write(_inserting(batch))
                except Exception:
                    log.exception("%d lines of container output could not be stored", len(batch))
                self._pending_bytes -= size
                self._stored_through = batch[-1]["id"]
                self._wake()
        finally:
            self._writer = None

    def _wake(self) -> None:
        if self._pending_bytes < MAX_PENDING_BYTES:
            room, self._room = self._room, []
            for fut in room:
                if not fut.done():
                    fut.set_result(None)
        still = []
        for line_id, fut in self._stored:
            if line_id <= self._stored_through:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((line_id, fut))
        self._stored = still

    async def stored(self, line_id: int | None = None) -> None:
        """Return once every line up to line_id (default: every line so far) is committed."""
        target = self.next_id - 1 if line_id is None else line_id
        if target <= self._stored_through:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stored.append((target, fut))
        await fut

    def follow(self, app_id: str) -> Follower:
        follower = Follower(self, app_id, self.next_id - 1)
        self.followers.setdefault(app_id, set()).add(follower)
        return follower

    def unfollow(self, app_id: str, follower: Follower) -> None:
        self.followers.get(app_id, set()).discard(follower)

    def close_app(self, app_id: str) -> None:
        """The app stopped and its containers are gone: end every follower's stream."""
        for follower in self.followers.pop(app_id, set()):
            follower.close()

    async def history(self, app_id: str, after: int = 0, limit: int = PAGE,
                      container_id: str | None = None) -> list[LogLine]:
        """The app's stored lines after `after`, or only those of one of its containers."""
        q = sa.select(s.logs).where(s.logs.c.app_id == app_id, s.logs.c.id > after)
        if container_id is not None:
            q = q.where(s.logs.c.container_id == container_id)
        rows = await self.db.read(q.order_by(s.logs.c.id).limit(limit))
        return [
            LogLine(r.id, r.app_id, r.function_name or "", r.container_id or "", r.stream, r.ts,
                    r.text)
            for r in rows
        ]


def _inserting(rows: list[dict[str, Any]]) -> WriteOp:
    async def op(conn: AsyncConnection) -> None:
        await conn.execute(s.logs.insert(), rows)

    return op


class Follower:
    """One live reader of an app's output, from the line after `last` on. It buffers at most
    FOLLOWER_BYTES; when a slow reader lets that fill, the buffer is dropped and the lines it
    held, and those after, are read from the database until the reader has caught up."""

    def __init__(self, hub: LogHub, app_id: str, last: int) -> None:
        self.hub, self.app_id, self.last = hub, app_id, last
        self._buffer: deque[LogLine] = deque()
        self._bytes = 0
        self._behind = False  # the buffer overflowed: lines after `last` come from the database
        self._replay_until: int | None = None  # lines before this id come from the database
        self._page: deque[LogLine] = deque()
        self._closed = False
        self._wake = asyncio.Event()

    def push(self, line: LogLine) -> None:
        if self._behind:
            return
        if self._bytes + _cost(line.text) > FOLLOWER_BYTES:
            self._behind = True
            self._buffer.clear()
            self._bytes = 0
        else:
            self._buffer.append(line)
            self._bytes += _cost(line.text)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def get(self) -> LogLine | None:
        """The next line, or None once the app's output ended; safe to cancel (wait_for)."""
        while True:
            if self._behind:
                # Lines from here on go to the buffer again; the ones before, to the database.
                self._behind = False
                self._replay_until = self.hub.next_id
            if self._replay_until is not None:
                if not self._page:
                    await self.hub.stored(self._replay_until - 1)
                    page = await self.hub.history(self.app_id, self.last, PAGE)
                    self._page.extend(x for x in page if x.id < self._replay_until)
                    if not self._page:
                        self._replay_until = None
                        continue
                line = self._page.popleft()
                self.last = line.id
                return line
            if self._buffer:
                line = self._buffer.popleft()
                self._bytes -= _cost(line.text)
                if line.id > self.last:
                    self.last = line.id
                    return line
                continue
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
