"""Decorators that mark methods and functions before `@app.function` / `@app.cls` sees them:
method, enter, exit, concurrent, batched, and class parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..exception import InvalidError
from ..wire import spec as wire_spec

_MISSING: Any = object()
PARAMETER_TYPES = (int, str, bytes, bool)


@dataclass
class PartialFunction:
    """A function with firebox flags, waiting to be wrapped by the app or a class."""

    raw_f: Callable[..., Any]
    flags: set[str] = field(default_factory=set)
    is_generator: bool | None = None
    snap: bool = False
    max_inputs: int | None = None
    target_inputs: int | None = None
    batch_max_size: int | None = None
    batch_wait_ms: int | None = None
    web: dict[str, Any] | None = None  # set by the web decorators (sdk/web.py)
    model: dict[str, Any] | None = None  # set by @model_api: the model names its web serves

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        # Inside the class body and on instances, behave like the plain method.
        if obj is None:
            return self
        return self.raw_f.__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)


def _partial(f: Any) -> PartialFunction:
    if isinstance(f, PartialFunction):
        return f
    if not callable(f):
        raise InvalidError(f"{f!r} is not a function; decorate a function or method.")
    return PartialFunction(raw_f=f)


def method(_f: Any = None, *, is_generator: bool | None = None) -> Any:
    """Mark a method of an `@app.cls` class as callable remotely."""
    if _f is not None:
        raise InvalidError("Use @firebox.method() with parentheses.")

    def wrap(f: Any) -> PartialFunction:
        p = _partial(f)
        p.flags.add("method")
        p.is_generator = is_generator
        return p

    return wrap


def enter(_f: Any = None, *, snap: bool = False) -> Any:
    """Run this method when a container starts, before it takes inputs."""
    if _f is not None:
        raise InvalidError("Use @firebox.enter() with parentheses.")

    def wrap(f: Any) -> PartialFunction:
        p = _partial(f)
        p.flags.add("enter")
        p.snap = snap
        return p

    return wrap


def exit(_f: Any = None) -> Any:
    """Run this method when a container shuts down."""
    if _f is not None:
        raise InvalidError("Use @firebox.exit() with parentheses.")

    def wrap(f: Any) -> PartialFunction:
        p = _partial(f)
        p.flags.add("exit")
        return p

    return wrap


def concurrent(_f: Any = None, *, max_inputs: int, target_inputs: int | None = None) -> Any:
    """Let one container run up to max_inputs inputs at once (tasks for async, threads for sync)."""
    if _f is not None:
        raise InvalidError("Use @firebox.concurrent(max_inputs=...) with parentheses.")
    if max_inputs < 1:
        raise InvalidError("max_inputs must be at least 1.")
    if target_inputs is not None and not 1 <= target_inputs <= max_inputs:
        raise InvalidError("target_inputs must be between 1 and max_inputs.")

    def wrap(f: Any) -> Any:
        if inspect.isclass(f):
            f.__firebox_concurrent__ = (max_inputs, target_inputs)
            return f
        p = _partial(f)
        p.flags.add("concurrent")
        p.max_inputs, p.target_inputs = max_inputs, target_inputs
        return p

    return wrap


def batched(_f: Any = None, *, max_batch_size: int, wait_ms: int) -> Any:
    """Callers pass single items; the function receives lists and returns a list as long."""
    if _f is not None:
        raise InvalidError("Use @firebox.batched(max_batch_size=..., wait_ms=...).")
    if not 1 <= max_batch_size <= wire_spec.BATCH_SIZE_MAX:
        raise InvalidError(f"max_batch_size must be between 1 and {wire_spec.BATCH_SIZE_MAX}.")
    if not 0 <= wait_ms <= wire_spec.BATCH_WAIT_MS_SDK_MAX:
        raise InvalidError(f"wait_ms must be between 0 and {wire_spec.BATCH_WAIT_MS_SDK_MAX} "
                           "(10 minutes).")

    def wrap(f: Any) -> PartialFunction:
        p = _partial(f)
        p.flags.add("batched")
        p.batch_max_size, p.batch_wait_ms = max_batch_size, wait_ms
        return p

    return wrap


class _Parameter:
    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init


def parameter(*, default: Any = _MISSING, init: bool = True) -> Any:
    """Declare a class parameter: `k: int = firebox.parameter(default=3)`."""
    return _Parameter(default, init)


def class_parameters(user_cls: type) -> dict[str, dict[str, Any]]:
    """The parameters a class declares, with their type names and defaults."""
    hints = getattr(user_cls, "__annotations__", {})
    out: dict[str, dict[str, Any]] = {}
    for name, value in vars(user_cls).items():
        if not isinstance(value, _Parameter):
            continue
        annotation = hints.get(name)
        if isinstance(annotation, str):
            annotation = {"int": int, "str": str, "bytes": bytes, "bool": bool}.get(annotation)
        if annotation not in PARAMETER_TYPES:
            raise InvalidError(
                f"Parameter '{name}' of {user_cls.__name__} must be annotated int, str, bytes or "
                "bool."
            )
        out[name] = {
            "type": annotation.__name__,
            "init": value.init,
            "has_default": value.default is not _MISSING,
        }
    return out


def parameter_defaults(user_cls: type) -> dict[str, Any]:
    return {
        name: value.default
        for name, value in vars(user_cls).items()
        if isinstance(value, _Parameter) and value.default is not _MISSING
    }
