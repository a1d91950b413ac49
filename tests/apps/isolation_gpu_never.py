"""An app with a function that asks for more GPUs than the fake inventory has, beside one that
needs none."""

import firebox

app = firebox.App("test-gpu-never")


@app.function(gpu="A100-80GB:2")
def too_many():
    return "never"


@app.function()
def cpu_only():
    return "served"
