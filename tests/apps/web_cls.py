"""Web endpoints on class methods, and ASGI lifespans, that the tests send real HTTP to."""

import asyncio
import contextlib
import os
import subprocess
import sys

import firebox

app = firebox.App("test-web-cls")
signals = firebox.Dict.from_name("test-web-cls-signals", create_if_missing=True)
LOADS: list[int] = []  # one entry per run of Model.load in this container


@app.cls(scaledown_window=2)
@firebox.concurrent(max_inputs=2)
class Model:
    scale: int = firebox.parameter(default=3)

    @firebox.enter()
    def load(self):
        LOADS.append(self.scale)
        self.weights = self.scale * 10

    def _where(self):
        return {"loads": len(LOADS), "container": os.environ["FIREBOX_CONTAINER_ID"]}

    @firebox.fastapi_endpoint(method="POST")
    def predict(self, item: dict):
        return {"y": item["x"] * self.weights, **self._where()}

    @firebox.fastapi_endpoint(label="test-web-cls-about")
    async def about(self, who: str = "you"):
        return {"hello": who, "scale": self.scale, **self._where()}

    @firebox.fastapi_endpoint()
    async def barrier(self, key: str, n: int):
        # Each request waits until n requests arrived: with max_inputs=2 per container, n > 2
        # requests can only all finish if the pool scaled to more containers.
        count = await signals.get.aio(key, 0)
        while not await signals.put.aio(f"{key}-{count + 1}", True, skip_if_exists=True):
            count += 1
        await signals.put.aio(key, count + 1)
        for _ in range(400):
            if all([await signals.contains.aio(f"{key}-{i}") for i in range(1, n + 1)]):
                return self._where()
            await asyncio.sleep(0.05)
        return {"container": "gave up"}

    @firebox.fastapi_endpoint()
    def crash(self):
        os._exit(3)

    @firebox.fastapi_endpoint(requires_proxy_auth=True)
    def private(self):
        return "secret"

    @firebox.method()
    def embed(self, x: int):
        return {"y": x * self.weights, **self._where()}


@app.cls(scaledown_window=2, max_containers=1)
@firebox.concurrent(max_inputs=2)
class Solo:
    name: str = firebox.parameter(default="solo")

    @firebox.fastapi_endpoint()
    async def hold(self, key: str):
        # Holds its slot until the test says done, so a remote call made meanwhile can only
        # finish in this container if it is of the same pool.
        await signals.put.aio(key, os.environ["FIREBOX_CONTAINER_ID"])
        for _ in range(2400):
            if await signals.contains.aio(f"{key}-done"):
                break
            await asyncio.sleep(0.05)
        return os.environ["FIREBOX_CONTAINER_ID"]

    @firebox.method()
    def where(self):
        return os.environ["FIREBOX_CONTAINER_ID"]


@app.cls(scaledown_window=2)
class Servers:
    @firebox.asgi_app()
    def api(self):
        from fastapi import FastAPI, Request, WebSocket

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            container = os.environ["FIREBOX_CONTAINER_ID"]
            yield {"started_in": container}
            await signals.put.aio(f"shutdown-{container}", True)

        web = FastAPI(lifespan=lifespan)

        @web.get("/state")
        async def state(request: Request):
            return {"started_in": request.state.started_in,
                    "container": os.environ["FIREBOX_CONTAINER_ID"]}

        @web.websocket("/echo")
        async def echo(ws: WebSocket):
            await ws.accept()
            while True:
                await ws.send_text(f"echo {await ws.receive_text()}")

        return web

    @firebox.wsgi_app()
    def legacy(self):
        def wsgi(environ, start_response):
            body = f"wsgi {environ['REQUEST_METHOD']} {environ.get('QUERY_STRING', '')}".encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]

        return wsgi

    @firebox.web_server(8766, startup_timeout=20)
    def files(self):
        subprocess.Popen([sys.executable, "-m", "http.server", "8766", "--bind", "127.0.0.1",
                          "--directory", os.path.dirname(os.path.abspath(__file__))])


@app.function(scaledown_window=2)
@firebox.asgi_app()
def broken():
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        raise RuntimeError("the model file is missing")
        yield

    return FastAPI(lifespan=lifespan)
