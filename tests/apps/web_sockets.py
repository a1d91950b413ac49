"""Web functions with WebSocket routes, which the ingress tests open real sockets to."""

import os
import subprocess
import sys

import firebox

app = firebox.App("test-web-sockets")
seen = firebox.Dict.from_name("test-web-sockets-seen", create_if_missing=True)

# A WebSocket server of the container's own, for the web_server function: it answers each
# message with the path it was opened at, and closes with 4002 when told "bye".
PORT_SERVER = """
import asyncio
from websockets.asyncio.server import serve

async def handler(ws):
    async for message in ws:
        if message == "bye":
            await ws.close(4002, "the server says bye")
            return
        await ws.send(f"{ws.request.path} {message}")

async def main():
    async with serve(handler, "127.0.0.1", 8766):
        await asyncio.Future()

asyncio.run(main())
"""


@app.function(scaledown_window=2)
@firebox.concurrent(max_inputs=4)
@firebox.asgi_app()
def chat():
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    web = FastAPI()

    @web.websocket("/echo")
    async def echo(ws: WebSocket):
        await ws.accept(subprotocol=(ws.scope["subprotocols"] or [None])[0])
        await ws.send_json({"container": os.environ["FIREBOX_CONTAINER_ID"],
                            "path": ws.url.path, "query": ws.url.query})
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"][::-1])
            elif message["text"] == "close":
                await ws.close(code=4001, reason="asked to close")
                return
            elif message["text"] == "crash":
                os._exit(5)
            else:
                await ws.send_text(f"echo {message['text']}")

    @web.websocket("/watched/{key}")
    async def watched(ws: WebSocket, key: str):
        await ws.accept()
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect as gone:
            await seen.put.aio(key, f"disconnected {gone.code}")

    @web.websocket("/refuse")
    async def refuse(ws: WebSocket):
        raise RuntimeError("no sockets for you")

    return web


@app.function(scaledown_window=2)
@firebox.web_server(8766, startup_timeout=20)
def port_server():
    subprocess.Popen([sys.executable, "-c", PORT_SERVER])
