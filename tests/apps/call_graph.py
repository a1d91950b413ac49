"""An app whose calls make calls, for FunctionCall.get_call_graph: `root` calls `double` twice
(each spawns `leaf`), maps `fragile` over three inputs (the second raises), calls a method of
`Broken`, whose @enter raises, and one of `Counter`;
`waiting_root` calls `wait_for_file`, which runs until the test makes the file."""

import os
import time

import firebox

app = firebox.App("test-call-graph")


@app.function()
def leaf(x):
    return x + 1


@app.function()
def double(x):
    return leaf.spawn(x).get() * 2


@app.function(max_containers=1)
def fragile(x):
    if x == 2:
        raise ValueError("two is not allowed")
    return x


@app.cls()
class Counter:
    @firebox.method()
    def incr(self, x):
        return x + 1


@app.cls()
class Broken:
    @firebox.enter()
    def start(self):
        raise RuntimeError("this container never gets ready")

    @firebox.method()
    def go(self):
        return "never"


@app.function()
def root():
    doubled = [double.remote(1), double.remote(2)]
    mapped = list(fragile.map([1, 2, 3], return_exceptions=True))
    try:
        Broken().go.remote()
    except Exception:
        pass
    return doubled, [str(m) for m in mapped], Counter().incr.remote(0), firebox.current_input_id()


@app.function(isolation="process")  # sees the host's files
def wait_for_file(path):
    while not os.path.exists(path):
        time.sleep(0.02)
    return "released"


@app.function()
def waiting_root(path):
    return wait_for_file.remote(path)
