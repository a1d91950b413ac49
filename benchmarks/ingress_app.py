"""The trivial endpoint the ingress benchmark serves, through firebox and directly by uvicorn."""

import firebox

app = firebox.App("bench-ingress")


async def trivial(scope, receive, send):
    """The smallest ASGI app: answers every request with "ok"."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@app.function(scaledown_window=300, max_containers=1)
@firebox.concurrent(max_inputs=256)
@firebox.asgi_app()
def endpoint():
    return trivial
