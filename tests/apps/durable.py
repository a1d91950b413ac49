"""Functions for the durability tests: slow enough that a server can be killed mid-map."""

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
