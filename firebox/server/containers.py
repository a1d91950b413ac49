"""The container channel: one WebSocket per container, over which it pulls inputs and pushes
outputs. Containers dial in; the control plane never reaches into a container."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import wire
from .plane import ControlPlane

log = logging.getLogger("firebox.containers")


class WebSocketLink:
    """Sends messages to one container in order, without blocking the scheduler."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def send(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)

    async def pump(self) -> None:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            await self.ws.send_bytes(wire.pack(message))


async def container_channel(ws: WebSocket) -> None:
    cp: ControlPlane = ws.app.state.plane
    who = ws.scope["identity"]
    c = cp.scheduler.containers.get(who.container_id or "")
    if who.kind != "container" or c is None:
        await ws.close(code=4403)
        return
    await ws.accept()
    link = WebSocketLink(ws)
    hello = cp.scheduler.attach(c, link)
    link.send(hello)
    pump = asyncio.create_task(link.pump())
    try:
        while True:
            raw = await ws.receive_bytes()
            try:
                message = wire.unpack(raw)
                kind = message.get("t")
                if kind == "http":
                    cp.scheduler.on_http(c, message)
                elif kind == "outputs":
                    cp.scheduler.on_outputs(c, message["items"])
                elif kind == "ready":
                    cp.scheduler.on_ready(c)
                elif kind == "blobs":
                    link.send({"t": "blobs",
                               "items": _code_blobs(cp, hello, message["digests"])})
                elif kind == "init_failed":
                    cp.scheduler.on_init_failed(c, message["error"])
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
        link.queue.put_nowait(None)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        c.link = None


def _code_blobs(cp: ControlPlane, hello: dict[str, Any], digests: list[str]) -> dict[str, bytes]:
    """The code blobs a container asks for: only those its own function's spec names."""
    spec = hello["function"]
    allowed = set(((spec.get("code") or {}).get("files") or {}).values())
    if spec.get("serialized"):
        allowed.add(spec["serialized"])
    return {d: cp.blobs.get(d) for d in digests if d in allowed}


routes = [WebSocketRoute("/v1/containers/ws", container_channel)]
