"""An app whose module kills its container while it is being imported there."""

import os
import sys

import firebox as modal

app = modal.App("crash-at-import")

if not modal.is_local():
    print("the model file is missing: /models/weights.bin", file=sys.stderr, flush=True)
    os._exit(5)


@app.function()
def never():
    return "unreachable"
