"""A web function the tests deploy, to check its URL is stable across deploys."""

import firebox

app = firebox.App("test-web-deployed")


@app.function(scaledown_window=2)
@firebox.fastapi_endpoint()
def greet(who: str = "hi"):
    return f"deployed {who}"
