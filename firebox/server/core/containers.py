"""The container channel: one WebSocket per container, over which it pulls inputs and pushes
outputs. Containers dial in; the control plane never reaches into a container."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ... import wire
from ...wire import messages
from . import container_execs

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.containers")

CODE_CHUNK = 1024 * 1024  # bytes of a code blob per message: one is in memory at a time


class WebSocketChannel:
    """Sends messages to one container in order, without blocking the scheduler."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None] | None] | None] = (
            asyncio.Queue())

    def send(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait((message, None))

    async def deliver(self, message: dict[str, Any]) -> None:
        """Send a message and return once it is written to the socket: the sender of a long
        stream waits for each message, rather than queueing the stream in memory."""
        sent = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((message, sent))
        await sent

    async def pump(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            message, sent = item
            await self.ws.send_bytes(wire.pack(message))
            if sent is not None and not sent.done():
                sent.set_result(None)


async def container_channel(ws: WebSocket) -> None:
    cp: ControlPlane = ws.app.state.plane
    who = ws.scope["identity"]
    c = cp.scheduler.containers.get(who.container_id or "")
    if who.kind != "container" or c is None:
        await ws.close(code=4403)
        return
    await ws.accept()
    channel = WebSocketChannel(ws)
    hello = cp.scheduler.attach(c, channel)
    channel.send(hello)
    pump = asyncio.create_task(channel.pump())
    code: asyncio.Task[None] | None = None
    try:
        while True:
            raw = await ws.receive_bytes()
            try:
                message = wire.unpack(raw)
                kind = message.get(messages.TAG)
                if kind == messages.HTTP:
                    cp.scheduler.on_http(c, message)
                elif kind == messages.OUTPUTS:
                    cp.scheduler.on_outputs(c, message["items"])
                elif kind == messages.READY:
                    cp.scheduler.on_ready(c, message.get("start"))
                elif kind == messages.BLOBS and code is None:
                    code = asyncio.create_task(
                        _send_code(cp, channel, hello, [str(d) for d in message["digests"]]))
                elif kind == messages.INIT_FAILED:
                    cp.scheduler.on_init_failed(c, message["error"])
                elif kind == messages.EXEC_OUTPUT:
                    container_execs.on_output(c, message)
                elif kind == messages.EXEC_EXIT:
                    container_execs.on_exit(c, message)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # Only the container's own code could have sent it: that container goes, the
                # server and everyone else's containers stay.
                log.warning("container %s sent a malformed message (%s: %s); closing its "
                            "channel", c.id, type(exc).__name__, exc)
                await ws.close(code=1008)
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        channel.queue.put_nowait(None)
        for task in (pump, code):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        c.channel = None
        container_execs.container_gone(c)


async def _send_code(cp: ControlPlane, channel: WebSocketChannel, hello: dict[str, Any],
                     digests: list[str]) -> None:
    """Send the code blobs a container asks for (only those its own function's spec names) a
    chunk at a time, each read from its file once the one before is sent: `blob` messages,
    then `blobs` naming the digests that were not sent."""
    spec = hello["function"]
    allowed = set(((spec.get("code") or {}).get("files") or {}).values())
    if spec.get("serialized"):
        allowed.add(spec["serialized"])
    missing = []
    for digest in digests:
        try:
            if digest not in allowed:
                raise FileNotFoundError(digest)
            with await asyncio.to_thread(open, cp.blobs.path(digest), "rb") as f:
                while True:
                    data = await asyncio.to_thread(f.read, CODE_CHUNK)
                    last = len(data) < CODE_CHUNK
                    await channel.deliver(messages.blob(digest, data, last))
                    if last:
                        break
        except (OSError, ValueError):  # not its own, or not (or no longer) stored
            missing.append(digest)
    await channel.deliver(messages.blobs_missing(missing))


routes = [WebSocketRoute("/v1/containers/ws", container_channel)]
