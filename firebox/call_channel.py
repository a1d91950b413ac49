"""The client's end of the call channel: one WebSocket to the control plane that carries a
call's inputs and its outputs as numbered frames (see wire/calls.py and server/api/calls.py).

It is only a faster road for requests the HTTP API also serves. Whenever it cannot be used (it
will not connect, the server is too old to have it, the socket drops) the client goes by HTTP
instead, marking a request that may have reached the server as a retry, so nothing runs twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from typing import Any

from . import wire
from .wire import calls as wire_calls
from .wire import settings

# After a failed connect, HTTP carries the requests for this long before the channel is tried
# again: a server restarting or without the channel costs one failed connect, not one each.
RETRY_AFTER = 5.0


class Unavailable(Exception):
    """The channel could not be opened; the request was not sent."""


class Lost(Exception):
    """The channel dropped after the request was sent; the server may have acted on it."""


class CallChannel:
    def __init__(self, server_url: str, token: str) -> None:
        self.url = "ws" + server_url.removeprefix("http") + "/v1/calls/ws"
        self.token = token
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[wire_calls.ChannelReply]] = {}
        self._ids = itertools.count(1)
        self._opening: asyncio.Lock | None = None
        self._down_until = 0.0

    async def request(self, op: str, body: Mapping[str, Any], call_id: str | None = None,
                      retried: bool = False) -> wire_calls.ChannelReply:
        """Send one request and return its reply frame (`ok`, or `status`/`type`/`error`)."""
        ws = await self._open()
        rid = next(self._ids)
        fut: asyncio.Future[wire_calls.ChannelReply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        message: wire_calls.ChannelRequest = {"id": rid, "op": op, "body": body}
        if call_id is not None:
            message["call_id"] = call_id
        if retried:
            message["retried"] = True
        try:
            try:
                await ws.send(wire.pack(message))
            except Exception as exc:
                raise Lost(str(exc)) from None
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def _open(self) -> Any:
        if self._ws is not None:
            return self._ws
        if time.monotonic() < self._down_until:
            raise Unavailable("the call channel failed recently")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ws is not None:
                return self._ws
            try:
                self._ws = await self._connect()
            except Exception as exc:
                self._down_until = time.monotonic() + RETRY_AFTER
                raise Unavailable(str(exc)) from None
            self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _connect(self) -> Any:
        from websockets.asyncio.client import connect, unix_connect

        options: dict[str, Any] = {
            "additional_headers": {"Authorization": f"Bearer {self.token}"},
            "max_size": None, "ping_interval": None, "compression": None, "open_timeout": 10,
        }
        socket_path = settings.SERVER_SOCKET.get()
        own_server = (settings.SERVER_URL.get() or "").rstrip("/")
        if socket_path and self.url == "ws" + own_server.removeprefix("http") + "/v1/calls/ws":
            # Inside a container: its server by the unix socket, which needs no network.
            return await unix_connect(socket_path, "ws://firebox/v1/calls/ws", **options)
        return await connect(self.url, **options)

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                reply = wire.unpack(raw)
                fut = self._pending.get(reply.get("id"))
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except Exception:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(Lost("the call channel closed"))

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
