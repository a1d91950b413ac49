"""HTTP from the control plane straight to a model engine's port in its container: the model
gateway's short path. A request still goes through the scheduler (it waits for a replica,
counts toward autoscaling and is routed there), but once it is given a container the gateway
sends it to the engine itself, over keep-alive connections made as a client inside the
container would (Backend.connect: in its network namespace, to 127.0.0.1), instead of through
the container's channel and its runtime's proxy.

HTTP/1.1 on those connections: the request is written as it is, and the response parsed by
httptools (llhttp, the parser uvicorn serves with), which also undoes chunked encoding. httpcore
did the same in 0.5 ms more per request (benchmarks/gateway.py measured the difference)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httptools

Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
KEEPALIVE = 4.0  # seconds an idle connection is kept: under uvicorn's 5 s, which engines use


class EngineError(ConnectionError):
    """The engine's connection failed or its answer could not be read."""


class Response:
    """An engine's answer: its status and headers, then its body as it arrives."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chunks: asyncio.Queue[bytes | None | BaseException] = asyncio.Queue()
        self.complete = False
        self.keep_alive = False
        self.received = False  # any byte of it

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.chunks.get()
            if chunk is None:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_stream()])

    async def aclose(self) -> None:
        self.conn.done(self)


class _Connection(asyncio.Protocol):
    def __init__(self, engines: Engines, key: tuple[str, int]) -> None:
        self.engines, self.key = engines, key  # (container id, port)
        self.transport: asyncio.Transport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.response: Response | None = None
        self.parser: Any = None
        self.closed = False
        self.idle_since = time.monotonic()

    # ---- asyncio -------------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(EngineError(f"the engine closed the connection ({exc or 'at its end'})"))

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.transport.close()  # type: ignore[union-attr]  # nothing was asked
            return
        self.response.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(EngineError(f"the engine's answer is not HTTP: {exc}"))
            self.close()

    # ---- httptools -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        if not response.head.done():
            response.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.response.chunks.put_nowait(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response.complete = True
        response.chunks.put_nowait(None)

    # ---- requests ------------------------------------------------------------------------

    def send(self, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        self.response = Response(self)
        self.parser = httptools.HttpResponseParser(self)
        head = [b"POST ", path.encode(), b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.transport.write(b"".join(head) + body)  # type: ignore[union-attr]
        return self.response

    def done(self, response: Response) -> None:
        """The caller is done with the response: the connection is reused where it can be."""
        if response is not self.response:
            return
        self.response = None
        if response.complete and response.keep_alive and not self.closed:
            self.idle_since = time.monotonic()
            self.engines.idle.setdefault(self.key, []).append(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        response = self.response
        if response is None or response.complete:
            return
        if not response.head.done():
            response.head.set_exception(exc)
        response.chunks.put_nowait(exc)


class Engines:
    """Keep-alive connections per container, to the engines the gateway calls."""

    def __init__(self, connect: Connect, live: Callable[[str], bool]) -> None:
        self.connect = connect
        self.live = live  # whether a container still runs
        self.idle: dict[tuple[str, int], list[_Connection]] = {}  # (container, port) ->

    def _reuse(self, container_id: str, port: int) -> _Connection | None:
        conns = self.idle.get((container_id, port))
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE:
                return conn
            conn.close()
        return None

    async def _open(self, container_id: str, port: int) -> _Connection:
        for gone in [key for key in self.idle if not self.live(key[0])]:
            for conn in self.idle.pop(gone):
                conn.close()
        _reader, writer = await self.connect(container_id, port)
        conn = _Connection(self, (container_id, port))
        conn.writer = writer  # kept: a StreamWriter that is collected closes its transport
        transport: Any = writer.transport
        transport.set_protocol(conn)
        conn.transport = transport
        return conn

    async def send(self, container_id: str, port: int, path: str,
                   headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        """POST to the engine and wait for its answer's head; its body is read from the
        response (then aclose it). A reused connection the engine had closed is replaced."""
        headers = [(b"host", f"127.0.0.1:{port}".encode()), *headers]
        conn = self._reuse(container_id, port)
        if conn is not None:
            response = conn.send(path, headers, body)
            try:
                await response.head
                return response
            except EngineError:
                conn.close()
                if response.received:
                    raise
            except BaseException:  # cancelled: the connection is in an unknown state
                conn.close()
                raise
        try:
            conn = await self._open(container_id, port)
        except OSError as exc:
            raise EngineError(f"no engine listens on port {port}: {exc}") from exc
        response = conn.send(path, headers, body)
        try:
            await response.head
        except BaseException:
            conn.close()
            raise
        return response

    async def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
