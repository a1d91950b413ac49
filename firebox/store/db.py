"""The database connection: async SQLAlchemy on SQLite (default) or PostgreSQL, with migrations.

All writes go through one group-commit writer: callers hand it a small async function of a
connection, the writer runs every pending function in one transaction and then wakes them. SQLite
allows one writer at a time anyway, and one commit for many inputs is what makes fan-out fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

T = TypeVar("T")
WriteOp = Callable[[AsyncConnection], Awaitable[Any]]

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("firebox.store")


def async_url(url: str) -> str:
    """Map a plain database URL to the async driver firebox uses for it."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def insert_ignore(table: sa.Table, dialect: str) -> Any:
    """An INSERT that skips rows whose key exists: makes retried client requests idempotent."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


class Database:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._pending: list[tuple[WriteOp, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._insert_ignore: dict[str, Any] = {}

    async def migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        async with self.engine.begin() as conn:

            def upgrade(sync_conn: sa.Connection) -> None:
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(upgrade)

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="db-writer")

    async def close(self) -> None:
        if self._writer is not None:
            while self._pending:
                await asyncio.sleep(0.005)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.engine.dispose()

    def insert_ignore(self, table: sa.Table) -> Any:
        stmt = self._insert_ignore.get(table.name)
        if stmt is None:  # built once: statements are costly to build, and cached compiled
            stmt = self._insert_ignore[table.name] = insert_ignore(table, self.dialect)
        return stmt

    async def write(self, op: WriteOp) -> Any:
        """Run op in the next group commit and return its result once committed."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._wake.set()
        return await fut

    async def barrier(self) -> None:
        """Return once every write queued before this call has been committed."""
        await self.write(_nothing)

    def write_soon(self, op: WriteOp) -> None:
        """Queue op for the next group commit without waiting for it (logs, bookkeeping)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_log_failure)
        self._pending.append((op, fut))
        self._wake.set()

    async def read(self, stmt: Any) -> list[sa.Row[Any]]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(stmt)).all())

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            results: list[Any] = []
            try:
                async with self.engine.begin() as conn:
                    for op, _ in batch:
                        results.append(await op(conn))
            except Exception as exc:  # a failed op fails only itself: run the batch one by one
                if len(batch) == 1:
                    batch[0][1].set_exception(exc)
                    continue
                for op, fut in batch:
                    try:
                        async with self.engine.begin() as conn:
                            fut.set_result(await op(conn))
                    except Exception as one_exc:
                        fut.set_exception(one_exc)
                continue
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)


async def _nothing(_conn: Any) -> None:
    return None


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a background database write failed", exc_info=fut.exception())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
