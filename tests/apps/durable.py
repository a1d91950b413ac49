"""Functions for the durability tests: slow enough that a server can be killed mid-map."""

import os
import time

import firebox

app = firebox.App("test-durable")


@app.function(max_containers=4)
def square_slowly(x):
    time.sleep(0.02)
    return x * x


@app.function()
def wait_then_echo(value, seconds):
    time.sleep(seconds)
    return value


@app.function()
def count_slowly(n):
    for i in range(n):
        time.sleep(0.03)
        yield i


@app.function(max_containers=2, isolation="process")
@firebox.concurrent(max_inputs=64)
def trace(x, path):
    """Append x to a host file: one line per run, so inputs run again after a crash show."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{x}\n".encode())
    finally:
        os.close(fd)
    return x
