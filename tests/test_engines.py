"""The model gateway's connections to engines (server/gateways/engines.py), against small
asyncio HTTP servers that misbehave in the ways engines do: a keep-alive connection closed
while idle, a chunked body, a refused port, an answer that is not HTTP."""

from __future__ import annotations

import asyncio

import pytest

from firebox.server.gateways.engines import EngineError, Engines

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
CHUNKED = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")


async def _serve(answer: bytes, close_after: bool) -> tuple[asyncio.Server, int, list[int]]:
    """A server that answers every request with answer; with close_after, it closes each
    connection after one answer without saying so (as an engine's idle timeout does)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                break
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
            if close_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def _engines() -> Engines:
    return Engines(lambda cid, port: asyncio.open_connection("127.0.0.1", port),
                   lambda cid: True)


async def _post(engines: Engines, port: int) -> tuple[int, bytes]:
    response = await engines.send("c1", port, "/v1/x", [(b"content-length", b"2")], b"{}")
    try:
        return response.status, await response.aread()
    finally:
        await response.aclose()


def test_connections_are_reused_and_one_the_engine_closed_is_replaced():
    async def main() -> None:
        server, port, seen = await _serve(OK, close_after=False)
        engines = _engines()
        assert [await _post(engines, port) for _ in range(3)] == [(200, b"ok")] * 3
        assert len(seen) == 1, "one keep-alive connection"
        server.close()

        closing, port2, seen2 = await _serve(OK, close_after=True)
        assert await _post(engines, port2) == (200, b"ok")
        await asyncio.sleep(0.05)  # the engine has closed it, unknown to the pool
        assert await _post(engines, port2) == (200, b"ok")
        assert len(seen2) == 2
        closing.close()
        await engines.close()

    asyncio.run(main())


def test_a_chunked_body_comes_whole_and_errors_are_engine_errors():
    async def main() -> None:
        server, port, _ = await _serve(CHUNKED, close_after=False)
        engines = _engines()
        assert await _post(engines, port) == (200, b"hello world")
        server.close()
        garbage, port2, _ = await _serve(b"not http at all\r\n\r\n", close_after=True)
        with pytest.raises(EngineError, match="not HTTP"):
            await _post(engines, port2)
        garbage.close()
        await garbage.wait_closed()
        with pytest.raises(EngineError, match="no engine listens"):
            await _post(engines, port2)
        await engines.close()

    asyncio.run(main())
