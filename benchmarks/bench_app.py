"""The functions the core benchmarks call."""

import os
import time

import firebox

app = firebox.App("bench")


@app.function(scaledown_window=300)
def noop(x):
    return x


@app.function(scaledown_window=300, max_containers=2)
@firebox.concurrent(max_inputs=64)
def inc(x):
    return x + 1


@app.cls(scaledown_window=2)
class Cold:
    i: int = firebox.parameter(default=0)

    @firebox.method()
    def ping(self):
        return 1


@app.function(max_containers=16, scaledown_window=60)
def sleep_one(i):
    started = time.time()
    time.sleep(1.0)
    return started, os.environ["FIREBOX_CONTAINER_ID"]


metering_app = firebox.App("bench-metering")


@metering_app.function(max_containers=4, scaledown_window=2)
def metered(seconds):
    time.sleep(seconds)
    return seconds
