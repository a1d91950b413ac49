"""GPU functions for tests/test_gpus.py, run against a server with a fake GPU inventory."""

import os
import time

import firebox

app = firebox.App("test-gpus")


def _report(hold):
    start = time.time()
    time.sleep(hold)
    return {
        "devices": os.environ["CUDA_VISIBLE_DEVICES"],
        "container_id": os.environ["FIREBOX_CONTAINER_ID"],
        "start": start,
        "end": time.time(),
    }


@app.function(gpu="H100", scaledown_window=2)
def one_h100(hold=0.0):
    return _report(hold)


@app.function(gpu="H100:2", scaledown_window=2)
def two_h100(hold=0.0):
    return _report(hold)


@app.function(gpu=["B200", "A100"], scaledown_window=2)
def b200_or_a100(hold=0.0):
    return _report(hold)


@app.function()
def no_gpu():
    return os.environ["CUDA_VISIBLE_DEVICES"]
