"""Functions that fail in the ways a caller must be told about clearly."""

import threading
import time

import firebox

app = firebox.App("test-errors")


class CustomError(Exception):
    pass


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled: its __init__ wants two arguments."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


class LockedError(Exception):
    """Cannot be pickled at all: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


if not firebox.is_local():

    class RemoteOnlyError(Exception):
        """Exists only in the container, so the caller cannot load it."""


def deep_helper(message):
    raise CustomError(message)


@app.function()
def raise_custom(message):
    deep_helper(message)


@app.function()
def raise_builtin():
    return {}["missing key"]


@app.function()
def raise_two_arg():
    raise TwoArgError("x", "y")


@app.function()
def raise_locked():
    raise LockedError("holds a lock")


@app.function()
def raise_remote_only():
    raise RemoteOnlyError("only in the container")  # noqa: F821


@app.function()
def return_lock():
    return threading.Lock()


@app.function()
def yield_lock():
    yield 1
    yield threading.Lock()


@app.function()
def echo(value):
    return value


@app.function()
def size_of(value):
    return len(value)


@app.function(timeout=1)
def too_slow():
    time.sleep(60)


@app.function()
def call_raise_custom(message):
    """Calls another function of the app from inside a container."""
    return raise_custom.remote(message)
