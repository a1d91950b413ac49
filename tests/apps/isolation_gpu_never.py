"""A function that asks for more GPUs than the fake inventory has."""

import firebox

app = firebox.App("test-gpu-never")


@app.function(gpu="A100-80GB:2")
def too_many():
    return "never"
