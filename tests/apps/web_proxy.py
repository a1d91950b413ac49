"""An ASGI app that shows the scheme and URLs it believes it is served at."""

import firebox

app = firebox.App("test-web-proxy")


@app.function(scaledown_window=2)
@firebox.asgi_app()
def where():
    from fastapi import FastAPI, Request
    from fastapi.responses import RedirectResponse

    web = FastAPI()

    @web.get("/")
    async def start(request: Request):
        return RedirectResponse(str(request.url_for("seen")))

    @web.get("/seen", name="seen")
    async def seen(request: Request):
        return {"scheme": request.url.scheme, "url": str(request.url),
                "client": request.client.host if request.client else None}

    return web
