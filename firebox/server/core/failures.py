"""What a scheduled input or container fails with, in the words its caller reads: each says
what happened and what to do next."""

from __future__ import annotations

from ... import wire

REMOTE = "firebox.exception.RemoteError"
TIMEOUT = "firebox.exception.FunctionTimeoutError"


def app_stopped() -> bytes:
    return wire.error_record(
        REMOTE, "The app was stopped before this input finished; run or deploy it again.")


def arguments_gone() -> bytes:
    return wire.error_record(
        REMOTE,
        "The input's arguments were no longer in the server's database when its turn came; "
        "call the function again.",
    )


def input_timed_out(timeout: float) -> bytes:
    return wire.error_record(
        TIMEOUT,
        f"The input ran longer than the function's timeout of {timeout:g} s and was stopped; "
        "raise timeout= if it needs longer.",
    )


def startup_timed_out(startup: float) -> bytes:
    return wire.error_record(
        TIMEOUT,
        f"The container did not become ready within its startup timeout of {startup:g} s; "
        "make @enter hooks faster or raise startup_timeout.",
    )


def not_started(exc: Exception) -> bytes:
    return wire.error_record(REMOTE, f"The container could not be started: {exc}")


def exited_before_ready(cause: str, tail: str) -> bytes:
    return wire.error_record(
        REMOTE,
        f"The container {cause} before it was ready"
        + (f"; its last output:\n{tail}" if tail else "")
        + "\n(all of it: `firebox app logs`)",
    )


def exited_while_running(cause: str) -> bytes:
    return wire.error_record(
        REMOTE,
        f"The container running this input {cause}; see `firebox app logs` for its output, "
        "and add retries= to retry such inputs.",
    )


def exited_while_serving(cause: str, responding: bool) -> bytes:
    """A web request's container went: it cannot be retried, so it says to send it again."""
    when = "while it was responding" if responding else "before it answered"
    return wire.error_record(
        REMOTE,
        f"The container serving this request {cause} {when}; see `firebox app logs` for its "
        "output, and send the request again.",
    )


def stopped_while_responding(reason: str) -> bytes:
    return wire.error_record(
        REMOTE, f"The container serving this request {reason} while it was responding.")
