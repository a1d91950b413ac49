"""What Dict, Queue and Volume share: a named (or ephemeral) object of a workspace, looked up
lazily on first use, that pickles by name and id so it works again inside a container."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .. import _sync
from .. import client as client_mod
from .._sync import live_classmethod
from ..exception import NotFoundError
from .managers import ObjectManager

T = TypeVar("T", bound="NamedObject")


class NamedObject:
    _path = ""  # API collection, e.g. "/v1/dicts"
    _kind = ""  # "dict", "queue", "volume"
    objects = ObjectManager()  # Modal's `Volume.objects.create / list / delete`

    def __init__(self, name: str | None = None, *, create_if_missing: bool = False,
                 object_id: str | None = None, environment_name: str | None = None) -> None:
        self._name = name
        self._create_if_missing = create_if_missing
        self._object_id = object_id
        # The environment the name is looked up in; None: the client's (inside a container,
        # its app's).
        self._environment = environment_name or None
        # The server the id belongs to; None for an id handed over in a pickle (this process's
        # server is the one that made it).
        self._server: str | None = None

    def __repr__(self) -> str:
        return f"<firebox.{type(self).__name__} {self._name or self._object_id or '(ephemeral)'}>"

    def __reduce__(self) -> Any:
        return (_rehydrate, (type(self), self._name, self._create_if_missing, self._object_id,
                             self._environment))

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def object_id(self) -> str | None:
        return self._object_id

    @classmethod
    def from_name(cls: type[T], name: str, *, environment_name: str | None = None,
                  create_if_missing: bool = False, **_: Any) -> T:
        """The object called name (in environment_name, by default the client's), looked up
        when first used."""
        return cls(name, create_if_missing=create_if_missing, environment_name=environment_name)

    @classmethod
    def ephemeral(cls: type[T], **_: Any) -> EphemeralContext[T]:
        """`with X.ephemeral() as x:` an unnamed object, deleted when the block ends."""
        return EphemeralContext(cls)

    async def _resolve(self) -> str:
        c = client_mod.current()
        if self._object_id is not None and self._server in (None, c.server_url):
            return self._object_id
        if self._name is None:
            raise NotFoundError(
                f"This ephemeral {self._kind} belongs to another server or has ended."
            )
        if self._create_if_missing:
            resp = await c.request("POST", self._path, packed={"name": self._name,
                                                               "exist_ok": True},
                                   environment=self._environment)
        else:
            resp = await c.request("GET", f"{self._path}/{self._name}",
                                   environment=self._environment)
        self._object_id, self._server = resp["id"], c.server_url
        return str(resp["id"])

    async def _call(self, op: str, body: dict[str, Any] | None = None) -> Any:
        object_id = await self._resolve()
        return await client_mod.current().request(
            "POST", f"{self._path}/{object_id}/{op}", packed=body or {}
        )

    @_sync.live_method
    async def hydrate(self: T) -> T:
        await self._resolve()
        return self

    @live_classmethod
    async def delete(cls, name: str, *, environment_name: str | None = None) -> None:
        """Delete the object called name, with everything in it."""
        await client_mod.current().request("DELETE", f"{cls._path}/{name}",
                                           environment=environment_name)


def _rehydrate(cls: type[T], name: str | None, create_if_missing: bool,
               object_id: str | None, environment_name: str | None = None) -> T:
    return cls(name, create_if_missing=create_if_missing, object_id=object_id,
               environment_name=environment_name)


class EphemeralContext(Generic[T]):
    """Creates an unnamed object on entry and deletes it on exit; sync or async."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls
        self.obj: T | None = None

    async def _create(self) -> T:
        c = client_mod.current()
        resp = await c.request("POST", self.cls._path, packed={"ephemeral": True})
        obj = self.cls(None, object_id=resp["id"])
        obj._server = c.server_url
        self.obj = obj
        return obj

    async def _delete(self) -> None:
        if self.obj is not None and self.obj._object_id is not None:
            await client_mod.current().request(
                "DELETE", f"{self.cls._path}/{self.obj._object_id}"
            )

    def __enter__(self) -> T:
        return _sync.run(self._create())

    def __exit__(self, *exc: Any) -> None:
        _sync.run(self._delete())

    async def __aenter__(self) -> T:
        return await _sync.run_async(self._create())

    async def __aexit__(self, *exc: Any) -> None:
        await _sync.run_async(self._delete())
