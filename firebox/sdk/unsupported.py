"""Names of the Modal surface that other firebox issues will provide. Until then, using them
says so clearly instead of failing with an AttributeError."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError, NotSupportedYet


class _NotYetMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotSupportedYet(
            f"{cls.__name__}.{name}: {cls._what} are not supported yet in firebox."
        )


class _NotYet(metaclass=_NotYetMeta):
    _what = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotSupportedYet(f"{type(self)._what} are not supported yet in firebox.")


class NetworkFileSystem(_NotYet):
    _what = "Network file systems"


class CloudBucketMount(_NotYet):
    _what = "Cloud bucket mounts"


class Stub:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError("Stub was renamed; use firebox.App instead.")


class Mount:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError(
            "Mount was removed; use Image.add_local_dir or Image.add_local_python_source."
        )
