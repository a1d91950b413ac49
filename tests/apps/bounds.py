"""Functions for the memory-bound tests: output floods, large results and queued inputs."""

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


@app.function(scaledown_window=30, max_containers=1, isolation="process")  # sees the host's files
@firebox.concurrent(max_inputs=8)
def digest(data: bytes, release: str) -> str:
    """The sha256 of data, once the file `release` exists: until then every other input waits
    in the queue."""
    import hashlib
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
    return hashlib.sha256(data).hexdigest()


@app.function(scaledown_window=30)
def long_line(chars: int) -> int:
    """One line of `chars` two-byte characters, then a short one."""
    print("é" * chars, flush=True)
    print("after", flush=True)
    return chars
