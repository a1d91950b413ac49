"""For tests/test_cli_run.py: parameters with and without annotations, and a slow call."""

import time

import firebox

app = firebox.App("run-rules")


@app.function()
def scale(x: int, factor=2.0):
    return x * factor


@app.function()
def nap(s: float):
    time.sleep(s)
    return s


@app.local_entrypoint()
def main(n=2, name="w", loud=False):
    print(repr(n), repr(name), repr(loud))


@app.local_entrypoint()
def slow(s: float = 60.0):
    print("calling", flush=True)
    print(nap.remote(s))


@app.cls()
class Scaler:
    k: int = firebox.parameter(default=3)

    @firebox.method()
    def times(self, x: int):
        return self.k * x
