"""Functions for the memory-bound tests: output floods and large results."""

import firebox

app = firebox.App("test-bounds")


@app.function(scaledown_window=30)
def flood(lines: int, width: int = 100) -> int:
    text = "x" * (width - 1)
    for _ in range(lines):
        print(text)
    return lines


@app.function(scaledown_window=30, max_containers=1)
@firebox.concurrent(max_inputs=4)
def sized(n: int) -> bytes:
    """n bytes: results of several such inputs finish together and leave in one batch."""
    return b"x" * n


@app.function(scaledown_window=30)
@firebox.fastapi_endpoint(method="GET")
def body(n: int):
    from fastapi import Response

    return Response(b"x" * n, media_type="application/octet-stream")
