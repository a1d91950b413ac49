"""The ingress: serves web functions at their URLs (core/web_endpoints.py) on the control
plane's own port. A request to an endpoint's host goes to its function whatever its path (the
app is at the root of its origin); one to `/web/WORKSPACE/SLUG/...` on any other host goes to
that function with the prefix as its ASGI root_path (and, as ASGI says, in its path).

Each HTTP request becomes an input of the function's pool, so requests count as demand: a
request that arrives while no container runs is held until one is ready, and pools scale with
concurrent requests per container (@concurrent max_inputs). The request travels to the
container over its WebSocket channel as one message (the body is read first, up to the size
limit, so a request whose container is stopped before answering can be sent to another), and
the response comes back as start and body-chunk events that are passed on as they arrive.

A WebSocket is an input too, held like a request until a container is ready. The handshake
completes when the app in the container accepts; from then on each client message travels to
the container as a `ws_in` message addressed to the input, and each event of the app (accept,
send, close) comes back as an `http` event carrying it under `ws`. The socket's end (a close
from either side) ends the input.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from ... import wire
from ...wire import settings as variables
from ..core.functions import FunctionRecord, web_entries
from ..core.pools import Input

if TYPE_CHECKING:
    from ..core.plane import ControlPlane

# The WebSocket events a container's app may send on to the client.
SOCKET_EVENTS = ("websocket.accept", "websocket.send", "websocket.close")


def max_body_bytes() -> int:
    """The largest request body accepted, configurable by FIREBOX_WEB_MAX_BODY_MB."""
    return variables.WEB_MAX_BODY.get()


def max_message_bytes() -> int:
    """The largest WebSocket message passed on, configurable by FIREBOX_WEB_MAX_MESSAGE_MB."""
    return variables.WEB_MAX_MESSAGE.get()


class Exchange:
    """One request or WebSocket in flight: the container's events for it, in order."""

    __slots__ = ("queue", "started")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self.started = False

    def event(self, message: dict[str, Any]) -> None:
        if "status" in message or "ws" in message:
            self.started = True
        self.queue.put_nowait(("event", message, None))

    def finish(self, status: str, data: bytes | None) -> None:
        self.queue.put_nowait(("finish", status, data))

    def takes(self, c: Any) -> bool:
        return False  # the container's runtime serves it


class Ingress:
    """The ASGI app of endpoints' hosts and `/web/...`: each request to a web endpoint, a call
    of its function."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    # ---- serving ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        route, root, path = self.cp.web_endpoints.route(host, scope["path"])
        fid, method = route or ("", None)
        fn = await self.cp.load_function(fid) if fid else None
        web = web_entries(fn.spec).get(method) if fn is not None else None
        if fn is None or web is None or not self.cp.calls.accepts(fn):
            await _deny(scope, send, 404, f"No web function is served at {host}{scope['path']}; "
                        "`firebox deploy` or `firebox serve` prints the URLs.")
            return
        if web.get("requires_proxy_auth") and not await self.cp.web_endpoints.proxy_authorized(
            fn.workspace_id, headers.get(b"modal-key", b"").decode("latin-1"),
            headers.get(b"modal-secret", b"").decode("latin-1"),
        ):
            await _deny(scope, send, 401, "This endpoint requires proxy auth: send the Modal-Key "
                        "and Modal-Secret headers of a proxy token (`firebox token proxy create`).")
            return
        request = {
            "method": scope.get("method", "GET"),
            "path": path,
            "root_path": root,
            "query": scope.get("query_string", b""),
            "headers": scope["headers"],
            "body": b"",
            "scheme": scope.get("scheme", "http"),
            "client": list(scope["client"]) if scope.get("client") else None,
            "http_version": scope.get("http_version", "1.1"),
        }
        if scope["type"] == "websocket":
            request.update(type="websocket", subprotocols=list(scope.get("subprotocols", [])),
                           max_message=max_message_bytes())
            await self._relay_socket(fn, method, request, scope, receive, send)
            return
        body = await _read_body(scope, receive, send, headers)
        if body is None:
            return
        request["body"] = body
        await self._relay(fn, method, request, receive, send)

    def _submit(self, fn: FunctionRecord, method: str | None, request: dict[str, Any]
                ) -> tuple[Input, Exchange]:
        exchange = Exchange()
        return self.cp.calls.serve(fn, method, request, exchange), exchange

    async def _relay(self, fn: FunctionRecord, method: str | None, request: dict[str, Any],
                     receive: Receive, send: Send) -> None:
        calls = self.cp.calls
        inp, exchange = self._submit(fn, method, request)
        call_id = inp.call_id
        watcher = asyncio.create_task(_on_disconnect(receive, lambda: calls.cancel_web(call_id)))
        started = False
        try:
            while True:
                kind, a, b = await exchange.queue.get()
                if kind == "finish":
                    if a == wire.SUCCESS or a == wire.CANCELLED:
                        return
                    status, reason = _failure(a, b)
                    if started:
                        # Headers went out already: all that is left is to cut the response
                        # short, which the client sees as an incomplete body.
                        raise ConnectionAbortedError(reason)
                    await _text(send, status, reason)
                    return
                message = a
                if "status" in message:
                    started = True
                    await send({"type": "http.response.start", "status": message["status"],
                                "headers": message.get("headers") or []})
                if "body" in message or message.get("end"):
                    await send({"type": "http.response.body", "body": message.get("body", b""),
                                "more_body": not message.get("end")})
        finally:
            watcher.cancel()
            calls.cancel_web(call_id)  # the client went away or the send failed

    async def _relay_socket(self, fn: FunctionRecord, method: str | None,
                            request: dict[str, Any], scope: Scope, receive: Receive,
                            send: Send) -> None:
        inp, exchange = self._submit(fn, method, request)
        reader = asyncio.create_task(self._client_messages(inp, exchange, receive))
        accepted = closed = False
        try:
            while not closed:
                kind, a, b = await exchange.queue.get()
                if kind == "finish":
                    if a == wire.SUCCESS or a == wire.CANCELLED:
                        return
                    status, reason = _failure(a, b)
                    if accepted:
                        await send({"type": "websocket.close", "code": 1011,
                                    "reason": _close_reason(reason)})
                    else:
                        await _deny(scope, send, status, reason)
                    return
                event = a.get("ws")
                if event is None or event.get("type") not in SOCKET_EVENTS:
                    continue
                accepted = accepted or event["type"] == "websocket.accept"
                closed = event["type"] == "websocket.close"
                await send(event)
        except OSError:
            return  # the client went away while an event was on its way to it
        finally:
            reader.cancel()
            self.cp.calls.cancel_web(inp.call_id)

    async def _client_messages(self, inp: Input, exchange: Exchange, receive: Receive) -> None:
        """Pass the client's messages on to the container; its going away cancels the input.
        Messages arrive only once the handshake is done, so the input has its container."""
        calls = self.cp.calls
        limit = max_message_bytes()
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                size = len(data) if data is not None else len(message.get("text", "").encode())
                if size > limit:
                    exchange.event({"ws": {"type": "websocket.close", "code": 1009, "reason":
                                           f"Messages are limited to {limit} bytes."}})
                    calls.cancel_web(inp.call_id)
                    return
                calls.socket_in(inp, message)
            elif kind == "websocket.disconnect":
                calls.socket_in(inp, {"type": kind, "code": message.get("code", 1005)})
                calls.cancel_web(inp.call_id)
                return


async def _read_body(scope: Scope, receive: Receive, send: Send,
                     headers: dict[bytes, bytes]) -> bytes | None:
    limit = max_body_bytes()
    declared = headers.get(b"content-length")
    too_large = (f"The request body is larger than the {limit // (1024 * 1024)} MiB this server "
                 "accepts; send less, or raise FIREBOX_WEB_MAX_BODY_MB on the server.")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _text(send, 413, too_large)
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _text(send, 413, too_large)
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _on_disconnect(receive: Receive, cancel: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel()
            return


def _failure(status: str, data: bytes | None) -> tuple[int, str]:
    """The HTTP status and reason for a request that did not finish."""
    if status == wire.TIMEOUT:
        record = wire.unpack(data) if data else {}
        return 504, record.get("message") or "The web function timed out."
    try:
        record = wire.unpack(data or b"")
    except Exception:
        record = {}
    message = record.get("message") or "The web function failed."
    kind = record.get("type", "")
    if "app was stopped" in message:
        return 503, message
    if kind.startswith("firebox.exception."):
        return 502, message
    return 500, f"The web function raised {kind.rpartition('.')[2]}: {message}"


def _close_reason(text: str) -> str:
    """A close frame's reason: its first clause, within the 123 bytes the protocol allows."""
    return text.split("; ")[0].encode()[:123].decode(errors="ignore")


async def _deny(scope: Scope, send: Send, status: int, text: str) -> None:
    """Answer a request, or refuse a WebSocket handshake, with an HTTP status and a reason."""
    if scope["type"] == "http":
        await _text(send, status, text)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await _text(send, status, text, prefix="websocket.")
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": _close_reason(text)})


async def _text(send: Send, status: int, text: str, prefix: str = "") -> None:
    body = (text + "\n").encode()
    await send({"type": f"{prefix}http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": f"{prefix}http.response.body", "body": body})
