"""Dict: a durable key-value map on the control plane, shared by every container and caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from .. import wire
from .._sync import live_method, live_method_gen
from .named import NamedObject

_MISSING: Any = object()


def _key(key: Any) -> bytes:
    return wire.serialize(key, "Dict key")


class Dict(NamedObject):
    """`d = Dict.from_name("name", create_if_missing=True)`; `d["k"] = v`; `d["k"]`."""

    _path = "/v1/dicts"
    _kind = "dict"

    @live_method
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value of key, or default when it is absent."""
        resp = await self._call("get", {"key": _key(key)})
        return wire.deserialize(resp["value"], "Dict value") if resp["found"] else default

    @live_method
    async def contains(self, key: Any) -> bool:
        return bool((await self._call("contains", {"key": _key(key)}))["found"])

    @live_method
    async def len(self) -> int:
        return int((await self._call("len"))["len"])

    @live_method
    async def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Set key to value; with skip_if_exists, only if key is absent (atomic). Returns
        whether the value was written."""
        item = [_key(key), wire.serialize(value, "Dict value")]
        resp = await self._call("put", {"items": [item], "skip_if_exists": skip_if_exists})
        return bool(resp["written"])

    @live_method
    async def update(self, other: Mapping[Any, Any] | None = None, /, **kwargs: Any) -> None:
        """Set many keys at once, like dict.update."""
        merged = dict(other or {})
        merged.update(kwargs)
        items = [[_key(k), wire.serialize(v, "Dict value")] for k, v in merged.items()]
        if items:
            await self._call("put", {"items": items})

    @live_method
    async def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove key and return its value; KeyError when absent and no default is given."""
        resp = await self._call("pop", {"key": _key(key)})
        if resp["found"]:
            return wire.deserialize(resp["value"], "Dict value")
        if default is _MISSING:
            raise KeyError(key)
        return default

    @live_method
    async def clear(self) -> None:
        await self._call("clear")

    async def _entries(self) -> AsyncIterator[list[Any]]:
        after = ""
        while True:
            resp = await self._call("entries", {"after": after})
            for entry in resp["entries"]:
                yield entry
                after = entry[0]
            if not resp["more"]:
                return

    @live_method_gen
    async def keys(self) -> AsyncIterator[Any]:
        async for _, key, _ in self._entries():
            yield wire.deserialize(key, "Dict key")

    @live_method_gen
    async def values(self) -> AsyncIterator[Any]:
        async for _, _, value in self._entries():
            yield wire.deserialize(value, "Dict value")

    @live_method_gen
    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        async for _, key, value in self._entries():
            yield wire.deserialize(key, "Dict key"), wire.deserialize(value, "Dict value")

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return bool(self.contains(key))


__all__ = ["Dict"]
