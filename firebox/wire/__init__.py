"""The contract between client, control plane and container, and how values travel in it.

Control messages are msgpack maps; Python values inside them (arguments, results, exceptions)
are cloudpickled bytes. Outputs' statuses and inputs' states are named below; the rest is named
once in this package's modules: messages (the container channel), calls (call requests), ids,
settings (every FIREBOX_* variable), spec (the function spec), digests, user_code (between the
runtime and the SDK), build_events (an image build's progress) and sandbox (sandbox command
output).
"""

from __future__ import annotations

import io
import pickle
import traceback
from typing import Any

import cloudpickle
import msgpack

from .. import exception
from ..exception import DeserializationError, ExecutionError, SerializationError
from . import settings
from .ids import new_call_id as new_call_id  # callers of wire.new_call_id; ids.py mints it

VERSION = 1
MSGPACK = "application/x-msgpack"

# Outputs a container reports for an input.
SUCCESS = "success"  # data: the pickled return value
FAILURE = "failure"  # data: an encoded exception (see encode_exception)
TIMEOUT = "timeout"  # the input outlived the function's timeout
CANCELLED = "cancelled"  # the call was cancelled
ITEM = "item"  # data: (number, value) of one value a generator yielded; the input goes on

# States of an input in the control plane's store: one that is running is still pending there,
# so a restart runs it again.
PENDING = "pending"
DONE = "done"

TERMINAL = (SUCCESS, FAILURE, TIMEOUT, CANCELLED)


def max_payload_bytes() -> int:
    """The largest argument or result payload accepted, configurable by FIREBOX_MAX_PAYLOAD_MB."""
    return settings.MAX_PAYLOAD.get()


def pack(message: Any) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


_PLAIN = (int, float, str, bytes, bool, type(None))


def _plain(value: Any, depth: int = 0) -> bool:
    """Builtin data only, which plain pickle writes exactly as cloudpickle would, only faster."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if depth > 3:
        return False
    if kind is tuple or kind is list:
        return len(value) <= 64 and all(_plain(v, depth + 1) for v in value)
    if kind is dict:
        return len(value) <= 64 and all(
            type(k) in _PLAIN and _plain(v, depth + 1) for k, v in value.items()
        )
    return False


def serialize(value: Any, what: str = "value") -> bytes:
    try:
        if _plain(value):
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            data = cloudpickle.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"Could not serialize the {what} ({type(exc).__name__}: {exc}); pass values that "
            "cloudpickle can serialize, not open files, locks, sockets or live generators."
        ) from None
    limit = max_payload_bytes()
    if len(data) > limit:
        mb = 1024 * 1024  # the unit of FIREBOX_MAX_PAYLOAD_MB
        raise SerializationError(
            f"{what[:1].upper()}{what[1:]} serialized to {len(data) / mb:.1f} MB, over the "
            f"{limit / mb:g} MB limit; store large data in a file or volume and pass its "
            "path, or raise FIREBOX_MAX_PAYLOAD_MB."
        )
    return data


def item(number: int, value: Any) -> bytes:
    """A generator's value with its number: a generator run again after a restart yields its
    first values again, and the caller skips the ones it has."""
    return serialize((number, value), "yielded value")


def deserialize(data: bytes, what: str = "value") -> Any:
    try:
        return cloudpickle.loads(data)
    except Exception as exc:
        raise DeserializationError(
            f"Could not deserialize the {what} ({type(exc).__name__}: {exc}); make sure the "
            "same packages and modules are importable on both sides."
        ) from None


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def deserialize_plain(data: bytes, what: str = "value") -> Any:
    """A value of builtin data only (str, numbers, bytes, lists, tuples, dicts), without
    loading any class or calling anything: how the control plane reads a container's output,
    which it must not trust."""
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise DeserializationError(
            f"The {what} is not plain data ({type(exc).__name__}: {exc}); return builtin values "
            "only (str, numbers, lists, dicts).") from None


def encode_exception(exc: BaseException) -> bytes:
    """Pickle an exception with its traceback text; falls back to its repr if it won't pickle."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    record: dict[str, Any] = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": tb,
    }
    try:
        record["exc"] = cloudpickle.dumps(exc)
    except Exception:
        record["exc"] = None
    return pack(record)


def error_record(exc_type: str, message: str, traceback_text: str = "") -> bytes:
    """An exception record made by the control plane rather than by user code."""
    return pack({"type": exc_type, "message": message, "traceback": traceback_text, "exc": None})


def decode_exception(data: bytes) -> BaseException:
    """The original exception, its remote traceback attached; ExecutionError if it won't load."""
    record = unpack(data)
    tb = record.get("traceback") or ""
    exc: BaseException | None = None
    why = "it could not be pickled in the container, so make it picklable"
    if record.get("exc") is not None:
        try:
            exc = cloudpickle.loads(record["exc"])
        except Exception as load_error:
            why = (
                f"it could not be loaded here ({type(load_error).__name__}: {load_error}), so "
                "make its class importable and constructible from its args on this side"
            )
    if exc is None:
        exc = _builtin_error(record["type"], record["message"], why)
    if tb and hasattr(exc, "add_note"):
        exc.add_note("Remote traceback:\n" + tb.rstrip())
    return exc


def _builtin_error(type_name: str, message: str, why: str) -> BaseException:
    module, _, name = type_name.rpartition(".")
    # "firebox.exceptions" is the module's name in records stored before it was merged.
    if module in ("firebox.exception", "firebox.exceptions") and hasattr(exception, name):
        return getattr(exception, name)(message)
    return ExecutionError(
        f"The function raised {type_name}: {message} ({why} to get the original exception; "
        "the remote traceback is attached)"
    )
