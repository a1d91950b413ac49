"""The server's loopback address inside a container that has a network of its own: a relay
from it to the control plane's unix socket, so the URLs the server hands out (web endpoints'
at 127.0.0.1 or *.localhost, get_web_url() of a sibling) reach it from the container's code."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHUNK = 64 * 1024
_serving: list[asyncio.Server] = []  # held for the container's life


async def relay(server_url: str, socket_path: str) -> bool:
    """Listen at the server URL's loopback port, if it is one, and pipe every connection to the
    unix socket; whether it does. Not where the port is taken: without a network namespace of
    its own (process isolation) the server itself is there."""
    url = urllib.parse.urlsplit(server_url)
    if url.scheme != "http" or url.hostname not in LOOPBACK or url.port is None:
        return False

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    try:
        # Containers started from one template share its network namespace: each listens,
        # and the kernel hands every connection to one of them.
        _serving.append(await asyncio.start_server(connection, "127.0.0.1", url.port,
                                                   reuse_port=True))
    except OSError:
        return False
    return True


def close() -> None:
    """Stop listening (a template does before it forks the containers that listen)."""
    while _serving:
        _serving.pop().close()
