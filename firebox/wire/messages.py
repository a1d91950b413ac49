"""The container channel's messages: one msgpack map per WebSocket frame, its kind under TAG.

Each tag says who sends it; the TypedDicts name the keys each kind carries.
"""

from __future__ import annotations

from typing import Any, TypedDict

from .spec import FunctionSpec

TAG = "t"  # the key of a message's kind

# Control plane -> container.
HELLO = "hello"  # first message on a new channel: what the container must load
INPUTS = "inputs"  # inputs to run
WS_IN = "ws_in"  # a WebSocket client's event for the socket an input is serving
CANCEL = "cancel"  # inputs to cancel
STOP = "stop"  # finish the running inputs and exit
BLOB = "blob"  # a chunk of a code blob the container asked for
# A command exec'd into the container (`firebox container exec`): start it, its input, a signal.
EXEC = "exec"
EXEC_STDIN = "exec_stdin"
EXEC_SIGNAL = "exec_signal"
EXEC_RESIZE = "exec_resize"  # an exec'd command's terminal has a new size: id, size

# Container -> control plane.
READY = "ready"  # the code is loaded and enter hooks ran: send inputs
INIT_FAILED = "init_failed"  # loading the code or an enter hook raised
OUTPUTS = "outputs"  # results of inputs
# A web input's response events: id, then status and headers, body pieces (body), or a
# WebSocket's event (ws); end (with exec, the seconds it ran) finishes the input.
HTTP = "http"
EXEC_OUTPUT = "exec_output"  # a chunk of an exec'd command's output: id, fd (1 or 2), data
EXEC_EXIT = "exec_exit"  # an exec'd command ended, all its output sent: id, code

# Both ways: the container names the code blobs it wants (digests), and the control plane,
# after their BLOB chunks, ends the stream with the digests it did not send (missing).
BLOBS = "blobs"


class Hello(TypedDict):
    t: str
    container_id: str
    app_id: str
    function_id: str
    function: FunctionSpec
    params: bytes | None  # a class's parameters (user_code.pack_params); None for a function


class InputItem(TypedDict):
    """One input of an INPUTS message."""

    id: str
    call_id: str
    idx: int
    method: str | None
    args: bytes | None  # serialized (args, kwargs); for a web input, the packed request
    attempt: int


class OutputItem(TypedDict):
    """One result of an OUTPUTS message."""

    id: str
    status: str  # one of wire's output statuses
    data: bytes | None
    exec: float | None  # seconds the input ran


class Blob(TypedDict):
    t: str
    digest: str
    data: bytes
    last: bool


def hello(container_id: str, app_id: str, function_id: str, function: FunctionSpec,
          params: bytes | None) -> Hello:
    return {"t": HELLO, "container_id": container_id, "app_id": app_id,
            "function_id": function_id, "function": function, "params": params}


def inputs(items: list[InputItem]) -> dict[str, Any]:
    return {TAG: INPUTS, "items": items}


def ws_in(input_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {TAG: WS_IN, "id": input_id, "event": event}


def cancel(input_ids: list[str]) -> dict[str, Any]:
    return {TAG: CANCEL, "ids": input_ids}


def stop() -> dict[str, Any]:
    return {TAG: STOP}


def blob(digest: str, data: bytes, last: bool) -> Blob:
    return {"t": BLOB, "digest": digest, "data": data, "last": last}


def blobs_wanted(digests: list[str]) -> dict[str, Any]:
    return {TAG: BLOBS, "digests": digests}


def blobs_missing(digests: list[str]) -> dict[str, Any]:
    return {TAG: BLOBS, "missing": digests}


# How a container started, in its ready message: a cold launch, a standby runtime, a fork of a
# memory snapshot's template, a restore of a stored one (`firebox app stats` counts them).
START_KINDS = ("cold", "standby", "template", "stored")


def ready(start: str = "cold") -> dict[str, Any]:
    return {TAG: READY, "start": start}


def start_kind(said: object) -> str:
    """What a ready message says of its container's start: one of START_KINDS, else cold."""
    return said if isinstance(said, str) and said in START_KINDS else "cold"


def init_failed(error: bytes) -> dict[str, Any]:
    return {TAG: INIT_FAILED, "error": error}


def outputs(items: list[OutputItem]) -> dict[str, Any]:
    return {TAG: OUTPUTS, "items": items}


def exec_start(exec_id: str, args: list[str], cwd: str | None, pty: bool,
               size: list[int] | None) -> dict[str, Any]:
    return {TAG: EXEC, "id": exec_id, "args": args, "cwd": cwd, "pty": pty, "size": size}


def exec_stdin(exec_id: str, data: bytes, eof: bool) -> dict[str, Any]:
    return {TAG: EXEC_STDIN, "id": exec_id, "data": data, "eof": eof}


def exec_signal(exec_id: str, sig: int) -> dict[str, Any]:
    return {TAG: EXEC_SIGNAL, "id": exec_id, "sig": sig}


def exec_resize(exec_id: str, size: list[int]) -> dict[str, Any]:
    return {TAG: EXEC_RESIZE, "id": exec_id, "size": size}


def exec_output(exec_id: str, fd: int, data: bytes) -> dict[str, Any]:
    return {TAG: EXEC_OUTPUT, "id": exec_id, "fd": fd, "data": data}


def exec_exit(exec_id: str, code: int) -> dict[str, Any]:
    return {TAG: EXEC_EXIT, "id": exec_id, "code": code}
