"""Where code is running: on the caller's machine or in a container, and for which input."""

from __future__ import annotations

from ..wire import settings
from ..wire.user_code import current_call, current_input


def is_local() -> bool:
    """True on the caller's machine, False inside a firebox container."""
    return not settings.IS_REMOTE.get()


def current_input_id() -> str | None:
    """The id of the input being run, inside a container; None elsewhere."""
    return current_input.get()


def current_function_call_id() -> str | None:
    """The id of the function call the running input belongs to; None outside a container."""
    return current_call.get()
