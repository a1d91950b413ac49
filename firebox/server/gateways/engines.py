"""HTTP from the control plane straight to a model engine's port in its container: the model
gateway's short path. A request still goes through the scheduler (it waits for a replica,
counts toward autoscaling and is routed there), but once it is given a container the gateway
sends it to the engine itself, over keep-alive connections made as a client inside the
container would (Backend.connect: in its network namespace, to 127.0.0.1), instead of through
the container's channel and its runtime's proxy.

httpcore speaks HTTP/1.1 over those connections; this module gives it their streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpcore

Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
KEEPALIVE = 4.0  # seconds an idle connection is kept: under uvicorn's 5 s, which engines use


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await asyncio.wait_for(self.reader.read(max_bytes), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writer.write(buffer)
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection that reads: the engine closed it
            return self.reader.at_eof()
        return self.writer.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, connect: Connect, container_id: str) -> None:
        self.connect, self.container_id = connect, container_id

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        reader, writer = await asyncio.wait_for(self.connect(self.container_id, port), timeout)
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Engines:
    """A pool of connections per container, to the engines the gateway calls."""

    def __init__(self, connect: Connect, live: Callable[[str], bool]) -> None:
        self.connect = connect
        self.live = live  # whether a container still runs
        self.pools: dict[str, httpcore.AsyncConnectionPool] = {}

    def _pool(self, container_id: str) -> httpcore.AsyncConnectionPool:
        pool = self.pools.get(container_id)
        if pool is None:
            for gone in [cid for cid in self.pools if not self.live(cid)]:
                asyncio.create_task(self.pools.pop(gone).aclose())
            pool = self.pools[container_id] = httpcore.AsyncConnectionPool(
                max_connections=4096, keepalive_expiry=KEEPALIVE,
                network_backend=_Backend(self.connect, container_id))
        return pool

    async def send(self, container_id: str, port: int, path: str,
                   headers: list[tuple[bytes, bytes]], body: bytes) -> httpcore.Response:
        """POST to the engine; the response's body is still to be read (then aclose it)."""
        request = httpcore.Request(
            b"POST", httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port,
                                  target=path.encode()),
            headers=[(b"host", f"127.0.0.1:{port}".encode()), *headers], content=body)
        return await self._pool(container_id).handle_async_request(request)

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()
        self.pools.clear()
