"""Container output: stored per app for `firebox app logs`, and fanned out live to followers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..store import schema as s
from ..store.db import Database


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
RESTART_GAP = 1_000_000  # more lines than one group commit can ever hold


class LogHub:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.next_id = 1
        self.followers: dict[str, set[asyncio.Queue[LogLine | None]]] = {}
        self.sources: dict[str, tuple[str, str]] = {}  # container id -> (app id, function)
        # Each container's last lines, for the error of one that dies before it is ready.
        self.tails: dict[str, deque[str]] = {}

    async def open(self) -> None:
        rows = await self.db.read(sa.select(sa.func.max(s.logs.c.id)))
        # Followers may hold ids of lines a crash kept from the database: jump past them, so
        # a follower resuming from such an id misses no new line.
        self.next_id = (rows[0][0] or 0) + 1 + (RESTART_GAP if rows[0][0] else 0)

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

    def container_output(self, container_id: str, stream: str, text: str) -> None:
        app_id, function = self.sources.get(container_id, ("", ""))
        if app_id:
            self._add(app_id, function, container_id, stream, text)
            tail = self.tails.get(container_id)
            if tail is not None:
                tail.append(text.rstrip("\n"))

    def system(self, app_id: str, function: str, container_id: str, text: str) -> None:
        self._add(app_id, function, container_id, "system", text)

    def _add(self, app_id: str, function: str, container_id: str, stream: str, text: str) -> None:
        text = text.replace("\x00", "\ufffd")  # PostgreSQL's text cannot hold NUL
        line = LogLine(self.next_id, app_id, function, container_id, stream, time.time(), text)
        self.next_id += 1
        self.db.write_soon(
            lambda conn: conn.execute(
                s.logs.insert().values(
                    id=line.id,
                    app_id=app_id,
                    container_id=container_id,
                    function_name=function,
                    stream=stream,
                    ts=line.ts,
                    text=text,
                )
            )
        )
        for q in self.followers.get(app_id, ()):
            q.put_nowait(line)

    def follow(self, app_id: str) -> asyncio.Queue[LogLine | None]:
        q: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self.followers.setdefault(app_id, set()).add(q)
        return q

    def unfollow(self, app_id: str, q: asyncio.Queue[LogLine | None]) -> None:
        self.followers.get(app_id, set()).discard(q)

    def close_app(self, app_id: str) -> None:
        """The app stopped and its containers are gone: end every follower's stream."""
        for q in self.followers.pop(app_id, set()):
            q.put_nowait(None)

    async def history(self, app_id: str, after: int = 0, limit: int = 10_000) -> list[LogLine]:
        rows = await self.db.read(
            sa.select(s.logs)
            .where(s.logs.c.app_id == app_id, s.logs.c.id > after)
            .order_by(s.logs.c.id)
            .limit(limit)
        )
        return [
            LogLine(r.id, r.app_id, r.function_name or "", r.container_id or "", r.stream, r.ts,
                    r.text)
            for r in rows
        ]
