"""Functions that time out, fail, retry and die, for the lifecycle tests. Each reports what it
did to a recorder URL the test passes in (see tests/helpers.py: Recorder)."""

import os
import signal
import time
import urllib.request

import firebox

app = firebox.App("test-faults")


class EnterError(Exception):
    pass


def record(url, text=""):
    """Post text to the recorder; returns how many entries its topic now has."""
    with urllib.request.urlopen(url, data=str(text).encode(), timeout=10) as response:
        return int(response.read())


def container_id():
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function(timeout=1)
def overrun(url):
    record(url, container_id())
    time.sleep(60)


@app.function(retries=2)
def fails_twice(url):
    attempt = record(url, container_id())
    if attempt <= 2:
        raise ValueError(f"attempt {attempt} failed")
    return attempt


@app.function(retries=firebox.Retries(max_retries=3, initial_delay=0.3, backoff_coefficient=2.0))
def always_fails(url):
    record(url)
    raise ValueError("always")


@app.function()
def exit_with(code):
    os._exit(code)


@app.function()
def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


@app.function(retries=firebox.Retries(max_retries=1, initial_delay=0.0))
def dies_once(url):
    if record(url, container_id()) == 1:
        os._exit(3)
    return container_id()


@app.cls()
class BrokenEnter:
    @firebox.enter()
    def load(self):
        raise EnterError("the model file is missing")

    @firebox.method()
    def predict(self, x):
        return x


@app.function()
def print_odd():
    print("nul\x00byte")
    print("plain line")
    return "done"
