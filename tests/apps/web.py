"""Web functions the ingress tests send real HTTP requests to."""

import asyncio
import os
import subprocess
import sys
import time
import warnings

from pydantic import BaseModel

import firebox

app = firebox.App("test-web")
signals = firebox.Dict.from_name("test-web-signals", create_if_missing=True)


class Item(BaseModel):
    name: str
    qty: int = 1


@app.function(scaledown_window=2)
@firebox.fastapi_endpoint(method="GET")
def hello(name: str = "world", times: int = 1):
    return {"greeting": " ".join([f"hello {name}"] * times),
            "container": os.environ["FIREBOX_CONTAINER_ID"]}


@app.function(scaledown_window=2)
@firebox.fastapi_endpoint(method="POST", docs=True)
def order(item: Item):
    return {"name": item.name.upper(), "total": item.qty * 3}


@app.function(scaledown_window=2)
@firebox.fastapi_endpoint(method="POST", label="test-web-secret", requires_proxy_auth=True)
def secret(body: dict):
    return {"seen": body}


with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
    @app.function(scaledown_window=2)
    @firebox.web_endpoint(method="GET")  # Modal's old name for fastapi_endpoint, still served
    def legacy(x: int = 1):
        return {"doubled": 2 * x}


@app.function(scaledown_window=2)
@firebox.concurrent(max_inputs=2)
@firebox.asgi_app()
def api():
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    web = FastAPI()

    @web.get("/stream/{key}")
    async def stream(key: str):
        async def chunks():
            yield b"first\n"
            # Hold the response open until the test, having read the first chunk, says go.
            for _ in range(600):
                if await signals.get.aio(key):
                    break
                await asyncio.sleep(0.05)
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @web.get("/barrier/{key}/{n}")
    async def barrier(key: str, n: int):
        # Each request waits until n requests arrived: with max_inputs=2 per container, n > 2
        # requests can only all finish if the pool scaled to more containers.
        count = await signals.get.aio(key, 0)
        while not await signals.put.aio(f"{key}-{count + 1}", True, skip_if_exists=True):
            count += 1
        await signals.put.aio(key, count + 1)
        for _ in range(400):
            if all([await signals.contains.aio(f"{key}-{i}") for i in range(1, n + 1)]):
                return {"container": os.environ["FIREBOX_CONTAINER_ID"]}
            await asyncio.sleep(0.05)
        return {"container": "gave up"}

    @web.post("/echo")
    async def echo(request: Request):
        body = await request.body()
        return {"size": len(body), "path": request.url.path,
                "root": request.scope.get("root_path")}

    @web.get("/crash")
    def crash():
        os._exit(3)

    @web.get("/crash-mid-stream")
    async def crash_mid_stream():
        async def chunks():
            yield b"partial\n"
            await asyncio.sleep(0.2)
            os._exit(4)

        return StreamingResponse(chunks(), media_type="text/plain")

    return web


@app.function(scaledown_window=2)
@firebox.asgi_app()
def site():
    """An app written for the root of its origin: absolute redirects and asset paths."""
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse, RedirectResponse

    web = FastAPI()

    @web.get("/")
    async def start():
        return RedirectResponse("/result")

    @web.get("/result")
    async def result(request: Request):
        return {"path": request.url.path, "root": request.scope.get("root_path"),
                "url": str(request.url),
                "asset": str(request.url_for("asset", name="x.js"))}

    @web.get("/static/{name}", name="asset")
    async def asset(name: str):
        return PlainTextResponse(f"// {name}", media_type="text/javascript")

    return web


@app.function(scaledown_window=2)
@firebox.wsgi_app()
def flask_like():
    def wsgi(environ, start_response):
        body = f"wsgi {environ['REQUEST_METHOD']} {environ.get('QUERY_STRING', '')}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return wsgi


@app.function(scaledown_window=2)
@firebox.web_server(8765, startup_timeout=20)
def server():
    subprocess.Popen([sys.executable, "-m", "http.server", "8765", "--bind", "127.0.0.1",
                      "--directory", os.path.dirname(os.path.abspath(__file__))])


@app.function()
def not_web():
    return time.time()
