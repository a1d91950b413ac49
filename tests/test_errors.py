"""How failures reach the caller: remote exceptions, serialization problems, limits, timeouts."""

from __future__ import annotations

import socket
import threading
import traceback

import pytest
from apps import errors

from firebox.exception import (
    DeserializationError,
    Error,
    ExecutionError,
    FunctionTimeoutError,
    SerializationError,
)


@pytest.fixture(scope="module", autouse=True)
def running(server):
    with errors.app.run(show_logs=False):
        yield


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_remote_exception_keeps_type_message_and_traceback():
    with pytest.raises(errors.CustomError) as info:
        errors.raise_custom.remote("boom")
    exc = info.value
    assert type(exc) is errors.CustomError
    assert str(exc) == "boom"
    notes = "\n".join(getattr(exc, "__notes__", []))
    assert "Traceback" in notes
    assert "deep_helper" in notes and "raise_custom" in notes


def test_builtin_exception_type():
    with pytest.raises(KeyError, match="missing key"):
        errors.raise_builtin.remote()


def test_exception_that_cannot_be_loaded_here_is_an_execution_error():
    with pytest.raises(ExecutionError) as info:
        errors.raise_remote_only.remote()
    text = full_text(info.value)
    assert "RemoteOnlyError: only in the container" in str(info.value)
    assert "could not be loaded here" in str(info.value)
    assert "raise_remote_only" in text  # the remote traceback

    with pytest.raises(ExecutionError) as info:
        errors.raise_two_arg.remote()
    assert "TwoArgError" in str(info.value) and "x and y" in str(info.value)
    assert "raise_two_arg" in full_text(info.value)


def test_exception_that_cannot_be_pickled_is_an_execution_error():
    with pytest.raises(ExecutionError) as info:
        errors.raise_locked.remote()
    assert "LockedError: holds a lock" in str(info.value)
    assert "could not be pickled in the container" in str(info.value)
    assert "raise_locked" in full_text(info.value)


def test_exception_of_a_nested_call_arrives_whole():
    with pytest.raises(errors.CustomError, match="nested"):
        errors.call_raise_custom.remote("nested")


def test_map_with_return_exceptions_keeps_the_traceback():
    [exc] = list(errors.raise_custom.map(["in map"], return_exceptions=True))
    assert isinstance(exc, errors.CustomError)
    assert "deep_helper" in "\n".join(exc.__notes__)


def live_generator():
    yield 1


@pytest.mark.parametrize("make", [threading.Lock, socket.socket, live_generator])
def test_unpicklable_argument(make):
    value = make()
    try:
        with pytest.raises(SerializationError) as info:
            errors.echo.remote(value)
    finally:
        if hasattr(value, "close"):
            value.close()
    message = str(info.value)
    assert "arguments" in message and "pass values that" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    with pytest.raises(SerializationError):
        list(errors.echo.map([1, value]))
    with pytest.raises(SerializationError):
        errors.echo.spawn(value)


def test_payload_over_the_limit(monkeypatch):
    monkeypatch.setenv("FIREBOX_MAX_PAYLOAD_MB", "1")
    with pytest.raises(SerializationError) as info:
        errors.size_of.remote(b"x" * 2_000_000)
    message = str(info.value)
    assert "limit" in message and "FIREBOX_MAX_PAYLOAD_MB" in message
    assert message.startswith("Arguments serialized to 1.9 MB, over the 1 MB limit;")
    assert errors.size_of.remote(b"x" * 100_000) == 100_000
    with pytest.raises(SerializationError, match="limit"):
        list(errors.size_of.map([b"x", b"x" * 2_000_000]))


def test_unpicklable_result_is_named():
    with pytest.raises(SerializationError, match="return value"):
        errors.return_lock.remote()
    with pytest.raises(SerializationError, match="yielded value"):
        list(errors.yield_lock.remote_gen())


def test_timeout_raises_function_timeout_error():
    with pytest.raises(FunctionTimeoutError, match="timeout"):
        errors.too_slow.remote()
    with pytest.raises(TimeoutError):  # FunctionTimeoutError is a TimeoutError too
        errors.too_slow.spawn().get()


def test_every_error_is_a_firebox_error():
    for cls in (SerializationError, DeserializationError, ExecutionError, FunctionTimeoutError):
        assert issubclass(cls, Error)


def test_a_container_dying_before_ready_says_why_in_the_error(server):
    from apps import crash_at_import

    with crash_at_import.app.run(show_logs=False):
        with pytest.raises(Error) as err:
            crash_at_import.never.remote()
    text = str(err.value)
    assert "exited with code 5 before it was ready" in text, text
    assert "the model file is missing: /models/weights.bin" in text, text
