"""The functions benchmarks/robustness.py runs: a log flood, inputs that leave a trace and one
that holds its container."""

import os
import time

import firebox

app = firebox.App("robustness")


@app.function(scaledown_window=60)
def flood(mb: int, width: int = 100) -> int:
    """Print `mb` MiB of output as lines of `width` characters, as fast as Python can."""
    line = "x" * (width - 1)
    n = mb * 1024 * 1024 // width
    for _ in range(n):
        print(line)
    return n


@app.function(scaledown_window=60, max_containers=2, isolation="process")
@firebox.concurrent(max_inputs=64)
def trace(x: int, path: str) -> int:
    """Append x to a host file: one line per execution, so re-runs after a crash show."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{x}\n".encode())
    finally:
        os.close(fd)
    return x


@app.function(scaledown_window=60, max_containers=1)
def hold(data: bytes) -> int:
    """Keep the only container busy, so every other input waits in the queue."""
    time.sleep(600)
    return len(data)
