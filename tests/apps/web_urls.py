"""A function that asks for a sibling web endpoint's URL inside its container and fetches it,
as Modal apps do to print or call their own endpoints."""

import urllib.request

import firebox

app = firebox.App("test-web-urls")


@app.function()
@firebox.fastapi_endpoint(method="GET")
def pong(word: str = "pong"):
    return {"said": word}


@app.function()
def own_urls() -> tuple[str | None, str | None, str]:
    url = pong.get_web_url()
    with urllib.request.urlopen(f"{url}?word=ping", timeout=30) as reply:
        return url, pong.web_url, reply.read().decode()


@app.function()
def plain_url() -> str | None:
    return own_urls.get_web_url()  # not a web function: None, in a container as outside
