"""Functions whose pools the autoscaling and metering tests watch."""

import os
import time

import firebox

app = firebox.App("test-scaling")


@app.function(scaledown_window=2)
def quick(x):
    return x + 1


@app.function(max_containers=2, scaledown_window=2)
def capped(seconds):
    time.sleep(seconds)
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function(min_containers=1, scaledown_window=2)
def warm():
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function(cpu=1.5, scaledown_window=2)
def whole_machine(seconds):
    time.sleep(seconds)
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function(scaledown_window=30)
def lazy():
    return os.environ["FIREBOX_CONTAINER_ID"]
