"""Between a container's runtime and the SDK the user's code was written with: the input being
run, a class's parameters as they travel, and what the runtime asks of the SDK (UserCode).

The SDK registers its UserCode when firebox is imported, which Python does before it runs any
of firebox.runtime, so the runtime depends on this contract and never on the SDK itself.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgpack

# The input (and its call) the code running in this context serves; None outside a container.
current_input: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "firebox_input_id", default=None
)
current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "firebox_call_id", default=None
)


def pack_params(values: dict[str, Any]) -> bytes | None:
    """A class's parameters in a canonical encoding: equal values give equal bytes, hence one
    pool of containers."""
    if not values:
        return None
    return msgpack.packb(sorted(values.items()), use_bin_type=True)


def unpack_params(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    return dict(msgpack.unpackb(data, raw=False))


class Hook(Protocol):
    """An @enter or @exit method of a class."""

    @property
    def raw_f(self) -> Callable[..., Any]: ...

    @property
    def snap(self) -> bool: ...


class UserCode(Protocol):
    def target(self, obj: Any) -> Any:
        """The user's function or class behind what the module defines (a decorated object)."""

    def instantiate(self, user_cls: type, params: dict[str, Any]) -> Any:
        """An instance of the user's class with its parameters set, before any hook ran."""

    def lifecycle_methods(self, user_cls: type, flag: str) -> list[Hook]:
        """The class's @enter (flag "enter") or @exit ("exit") methods, base classes' first."""

    async def mount_volumes(self, volumes: dict[str, str], container_root: Path) -> None:
        """Make the container's working copies of its volumes (mount path -> volume id)."""

    async def commit_volumes(self) -> None:
        """Commit every mounted volume, as a container does when it stops."""

    async def forget_client(self) -> None:
        """Close and drop the SDK's client (on firebox's loop), before a template forks."""


_registered: list[UserCode] = []


def register(code: UserCode) -> None:
    _registered[:] = [code]


def sdk() -> UserCode:
    if not _registered:
        raise RuntimeError("firebox's SDK is not loaded: import firebox before running a "
                           "container's runtime")
    return _registered[0]
