"""Functions and classes with enable_memory_snapshot=True, whose templates the snapshot tests
watch: each @enter(snap=True) run is counted in a Dict (named by the test in SNAP_DICT)."""

import os
import random
import time

import firebox

app = firebox.App("test-snapshots")
COUNTS = os.environ.get("SNAP_DICT", "snapshot-counts")

# Module-level state: made once in the template, there in every fork.
IMPORTED_AT = time.time()
IMPORTED_IN = os.getpid()


def mark(kind):
    """One key per run (containers run at once: a counter's read and write would race)."""
    counts = firebox.Dict.from_name(COUNTS, create_if_missing=True)
    counts[f"{kind}/{os.environ['FIREBOX_CONTAINER_ID']}/{os.getpid()}"] = True


@app.cls(enable_memory_snapshot=True, scaledown_window=2, max_containers=4)
class Model:
    @firebox.enter(snap=True)
    def load(self):
        mark("snap")
        self.weights = [random.random() for _ in range(1000)]
        self.loaded_in = os.getpid()

    @firebox.enter(snap=False)
    def warm(self):
        mark("restore")
        self.container = os.environ["FIREBOX_CONTAINER_ID"]

    @firebox.method()
    def info(self, seconds=0.0):
        time.sleep(seconds)
        return {"container": self.container, "env": os.environ["FIREBOX_CONTAINER_ID"],
                "pid": os.getpid(), "loaded_in": self.loaded_in,
                "weights": round(sum(self.weights), 6), "random": random.random()}


@app.function(enable_memory_snapshot=True, scaledown_window=2, max_containers=4)
def where(seconds=0.0):
    time.sleep(seconds)
    return {"imported_at": IMPORTED_AT, "imported_in": IMPORTED_IN, "pid": os.getpid(),
            "container": os.environ["FIREBOX_CONTAINER_ID"]}


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Broken:
    @firebox.enter(snap=True)
    def load(self):
        raise RuntimeError("the weights are missing")

    @firebox.method()
    def go(self):
        return 1
