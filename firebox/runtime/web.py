"""Web functions inside a container: turn the function into an ASGI app and serve the HTTP
requests that arrive over the control plane channel, streaming response events back."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import wire
from ..exception import ExecutionError, InvalidError
from ..wire import messages
from .adapters import AdapterLoader, allow_runtime_loading

Send = Callable[[bytes], Awaitable[None]]
BODY_PIECE = 1024 * 1024  # bytes of a response body per message to the control plane
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
              b"proxy-connection", b"te", b"trailer"}


class ClientDisconnected(OSError):
    """A WebSocket app sent an event after its socket closed (as ASGI servers raise it)."""


async def build_app(web: dict[str, Any], target: Any) -> Any:
    """The ASGI app that serves a web function, made once at container start."""
    kind = web["type"]
    if kind == "fastapi":
        from fastapi import FastAPI

        app = FastAPI(docs_url="/docs" if web.get("docs") else None, redoc_url=None,
                      openapi_url="/openapi.json" if web.get("docs") else None)
        app.add_api_route("/", target, methods=[web["method"]])
        return app
    adapters = (web.get("model") or {}).get("adapters")
    if adapters:
        allow_runtime_loading()
    made = await _call(target)
    if kind == "asgi":
        app = Lifespan(made)
        await app.startup()
        return app
    if kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(made)
    if kind == "web_server":
        await _wait_for_port(web["port"], web["startup_timeout"])
        proxy = PortProxy(web["port"])
        return AdapterLoader(proxy, proxy.http, adapters) if adapters else proxy
    raise InvalidError(f"Unknown kind of web function: {kind}")


class Lifespan:
    """An ASGI app with its lifespan run: startup before the container takes requests,
    shutdown when it stops, and the state its startup made in every request's scope."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.failure: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"] = dict(self.state)
        await self.app(scope, receive, send)

    async def startup(self) -> None:
        self.task = asyncio.create_task(self._run())
        self.inbox.put_nowait({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failure is not None:
            raise ExecutionError(
                f"The ASGI app's lifespan startup failed ({self.failure}), so the container "
                "stopped before serving requests; fix the startup, its output is in "
                "`firebox app logs`."
            )

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        await self.stopped.wait()
        if self.failure is not None:
            print(f"The ASGI app's lifespan shutdown failed: {self.failure}", flush=True)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except Exception:
            # An app that raises before it answers the startup does not speak lifespan (as
            # uvicorn takes it); one that said its startup failed raises what failed, which
            # its failure message carried already.
            pass
        finally:
            self.started.set()
            self.stopped.set()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            text = (message.get("message") or "").strip()
            print(text, file=sys.stderr, flush=True)
            self.failure = text.splitlines()[-1] if text else "no reason given"
        if kind.startswith("lifespan.startup."):
            self.started.set()
        elif kind.startswith("lifespan.shutdown."):
            self.stopped.set()


async def _call(f: Any) -> Any:
    if inspect.iscoroutinefunction(f):
        return await f()
    return await asyncio.to_thread(f)


async def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Nothing listened on port {port} within the web_server startup_timeout of "
                    f"{timeout:g} s; start the server in the function, or raise startup_timeout."
                ) from None
            await asyncio.sleep(0.05)


WHOLE_BODY = 1024 * 1024  # a response up to this size with a known length is passed on whole


class PortProxy:
    """An ASGI app that passes requests and WebSockets to a server listening on a port of this
    container."""

    def __init__(self, port: int) -> None:
        import httpx

        self.port = port
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None,
                                      limits=httpx.Limits(max_connections=None))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP
                   and k.lower() != b"host"]
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        request = self.http.build_request(
            scope["method"], path + ("?" + scope["query_string"].decode()
                                              if scope["query_string"] else ""),
            headers=headers, content=body,
        )
        response = await self.http.send(request, stream=True)
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw
                                    if k.lower() not in HOP_BY_HOP
                                    and k.lower() != b"content-length"]})
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) <= WHOLE_BODY:
                # Not a stream: the whole body travels with the start, in one message.
                body = b"".join([chunk async for chunk in response.aiter_raw()])  # as encoded
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _socket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        await receive()  # websocket.connect
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in HOP_BY_HOP and k.lower() != b"host"
                   and not k.lower().startswith(b"sec-websocket-")]
        try:
            upstream = await connect(f"ws://127.0.0.1:{self.port}{path}",
                                     additional_headers=headers, user_agent_header=None,
                                     subprotocols=scope.get("subprotocols") or None,
                                     compression=None,
                                     ping_interval=None, max_size=None)
        except (OSError, InvalidHandshake):
            await send({"type": "websocket.close", "code": 1011})  # refused: the client gets 403
            return

        async def to_server() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] == "websocket.receive":
                    data = message.get("bytes")
                    await upstream.send(data if data is not None else message["text"])

        async def to_client() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for data in upstream:
                    key = "bytes" if isinstance(data, bytes) else "text"
                    await send({"type": "websocket.send", key: data})
            code = upstream.close_code
            if code is None or code == 1006:  # no close frame came
                await send({"type": "websocket.close", "code": 1011, "reason":
                            f"The server on port {self.port} dropped the connection."})
            else:  # 1005 says the close carried no code, which a close frame cannot say
                await send({"type": "websocket.close", "reason": upstream.close_reason or "",
                            "code": 1000 if code == 1005 else code})

        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        tasks = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()


def _scope(request: dict[str, Any]) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request["http_version"],
        "method": request["method"],
        "scheme": request["scheme"],
        "path": request["path"],
        "raw_path": request["path"].encode(),
        "root_path": request["root_path"],
        "query_string": request["query"],
        "headers": [(k, v) for k, v in request["headers"]],
        "client": tuple(request["client"]) if request.get("client") else None,
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    if request.get("type") == "websocket":
        del scope["method"]
        scope.update(type="websocket", subprotocols=request.get("subprotocols") or [])
    return scope


async def serve_request(app: Any, input_id: str, request: dict[str, Any], send: Send) -> None:
    """Run one request through the ASGI app, sending start/body events as the app makes them.
    The first body chunk travels with the start, and the last one says the response ended."""
    started = time.perf_counter()
    scope = _scope(request)
    body_sent = False
    done = asyncio.Event()
    pending: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request["body"], "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def asgi_send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            pending.update(status=message["status"],
                           headers=[[bytes(k), bytes(v)] for k, v in message.get("headers", [])])
            return
        if kind != "http.response.body" or done.is_set():
            return
        body = message.get("body", b"")
        # A large body goes in pieces: the control plane refuses messages over a payload's size.
        for at in range(0, max(len(body), 1), BODY_PIECE):
            event = {messages.TAG: messages.HTTP, "id": input_id, **pending,
                     "body": body[at:at + BODY_PIECE]}
            pending.clear()
            if not message.get("more_body") and at + BODY_PIECE >= len(body):
                event["end"] = True
                event["exec"] = time.perf_counter() - started
                done.set()
            await send(wire.pack(event))

    try:
        await app(scope, receive, asgi_send)
        if not done.is_set():
            raise InvalidError("The web app returned without finishing its response.")
    finally:
        done.set()


async def serve_socket(app: Any, input_id: str, request: dict[str, Any], send: Send,
                       inbox: asyncio.Queue[dict[str, Any]]) -> None:
    """Run one WebSocket through the ASGI app: the client's messages arrive in the inbox, and
    the app's accept, send and close events go to the control plane as they are made. A close
    (the app's, or one made for it when it returns) ends the input."""
    started = time.perf_counter()
    limit = int(request["max_message"])
    state = {"connected": False, "closed": False, "ended": False}

    async def finish(close: dict[str, Any] | None) -> None:
        state["closed"] = state["ended"] = True
        event: dict[str, Any] = {messages.TAG: messages.HTTP, "id": input_id, "end": True,
                                 "exec": time.perf_counter() - started}
        if close is not None:
            event["ws"] = close
        await send(wire.pack(event))

    async def receive() -> dict[str, Any]:
        if not state["connected"]:
            state["connected"] = True
            return {"type": "websocket.connect"}
        message = await inbox.get()
        if message["type"] == "websocket.disconnect":
            state["closed"] = True
        return message

    async def asgi_send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if state["closed"]:
            raise ClientDisconnected("The WebSocket is closed.")
        if kind == "websocket.accept":
            event = {"type": kind, "subprotocol": message.get("subprotocol"),
                     "headers": [[bytes(k), bytes(v)] for k, v in message.get("headers", [])]}
        elif kind == "websocket.send":
            data = message.get("bytes")
            event = {"type": kind, "bytes": data} if data is not None else {
                "type": kind, "text": message["text"]}
            size = len(data) if data is not None else len(message["text"].encode())
            if size > limit:
                raise ValueError(f"A WebSocket message of {size} bytes is over the {limit} byte "
                                 "limit; send smaller messages, or raise "
                                 "FIREBOX_WEB_MAX_MESSAGE_MB on the server.")
        elif kind == "websocket.close":
            await finish({"type": kind, "code": message.get("code", 1000),
                          "reason": message.get("reason") or ""})
            return
        else:
            raise InvalidError(f"A WebSocket app cannot send {kind!r} events here.")
        await send(wire.pack({messages.TAG: messages.HTTP, "id": input_id, "ws": event}))

    try:
        await app(_scope(request), receive, asgi_send)
    except ClientDisconnected:
        pass  # the app sent after the socket closed, which ends it as a return would
    if not state["ended"]:
        await finish(None if state["closed"] else {"type": "websocket.close", "code": 1000,
                                                   "reason": ""})
