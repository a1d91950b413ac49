"""Web functions inside a container: turn the function into an ASGI app and serve the HTTP
requests that arrive over the control plane channel, streaming response events back."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import wire
from ..exceptions import InvalidError

Send = Callable[[bytes], Awaitable[None]]
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
              b"proxy-connection", b"te", b"trailer"}


async def build_app(web: dict[str, Any], target: Any) -> Any:
    """The ASGI app that serves a web function, made once at container start."""
    kind = web["type"]
    if kind == "fastapi":
        from fastapi import FastAPI

        app = FastAPI(docs_url="/docs" if web.get("docs") else None, redoc_url=None,
                      openapi_url="/openapi.json" if web.get("docs") else None)
        app.add_api_route("/", target, methods=[web["method"]])
        return app
    made = await _call(target)
    if kind == "asgi":
        return made
    if kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(made)
    if kind == "web_server":
        await _wait_for_port(web["port"], web["startup_timeout"])
        return PortProxy(web["port"])
    raise InvalidError(f"Unknown kind of web function: {kind}")


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


class PortProxy:
    """An ASGI app that passes requests to a server listening on a port of this container."""

    def __init__(self, port: int) -> None:
        import httpx

        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None,
                                      limits=httpx.Limits(max_connections=None))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def serve_request(app: Any, item: dict[str, Any], send: Send) -> None:
    """Run one request through the ASGI app, sending start/body events as the app makes them.
    The first body chunk travels with the start, and the last one says the response ended."""
    input_id = item["id"]
    request = wire.unpack(item["args"])
    started = time.perf_counter()
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
        event = {"t": "http", "id": input_id, **pending, "body": message.get("body", b"")}
        pending.clear()
        if not message.get("more_body"):
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
