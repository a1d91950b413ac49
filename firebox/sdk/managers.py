"""`Volume.objects`, `Dict.objects`, `Queue.objects` and `Secret.objects`: Modal's managers of
an object kind's named objects (create, list, delete), over the routes the CLI uses."""

from __future__ import annotations

import datetime
from typing import Any

from .. import client as client_mod
from .._sync import live_method
from ..exception import AlreadyExistsError, InvalidError, NotFoundError


def _before(created_before: datetime.datetime | str | None) -> float | None:
    """created_before as a timestamp: a datetime (naive ones are local time) or an ISO date."""
    if created_before is None:
        return None
    if isinstance(created_before, str):
        try:
            created_before = datetime.datetime.fromisoformat(created_before)
        except ValueError:
            raise InvalidError(f"created_before={created_before!r} is not an ISO date or time "
                               "(for example '2026-01-31' or '2026-01-31T12:00').") from None
    if not isinstance(created_before, datetime.datetime):
        raise InvalidError("created_before takes a datetime or an ISO date string.")
    return created_before.timestamp()


def _newest(rows: list[dict[str, Any]], max_objects: int | None,
            created_before: datetime.datetime | str | None) -> list[dict[str, Any]]:
    if max_objects is not None and max_objects < 0:
        raise InvalidError("max_objects cannot be negative.")
    before = _before(created_before)
    rows = sorted((r for r in rows if before is None or r["created_at"] < before),
                  key=lambda r: r["created_at"], reverse=True)
    return rows if max_objects is None else rows[:max_objects]


class _Manager:
    """Bound to its object class when read from it (`Volume.objects`)."""

    def __init__(self, owner: type | None = None) -> None:
        self._owner = owner

    def __get__(self, obj: Any, owner: type) -> Any:
        return type(self)(owner)

    @property
    def _path(self) -> str:
        return str(getattr(self._owner, "_path", ""))

    def _handle(self, row: dict[str, Any], environment_name: str | None, server: str) -> Any:
        """A handle on the listed object row names."""
        raise NotImplementedError

    @live_method
    async def list(self, *, max_objects: int | None = None,
                   created_before: datetime.datetime | str | None = None,
                   environment_name: str | None = None) -> list[Any]:
        """The named objects, newest first, as handles."""
        c = client_mod.current()
        resp = await c.request("GET", self._path, environment=environment_name)
        rows = resp[self._path.rsplit("/", 1)[-1]]  # {"dicts": [...]}, {"secrets": [...]}
        return [self._handle(row, environment_name, c.server_url)
                for row in _newest(rows, max_objects, created_before)]

    @live_method
    async def delete(self, name: str, *, allow_missing: bool = False,
                     environment_name: str | None = None) -> None:
        """Delete the named object and what it holds, irreversibly."""
        try:
            await client_mod.current().request("DELETE", f"{self._path}/{name}",
                                               environment=environment_name)
        except NotFoundError:
            if not allow_missing:
                raise


class ObjectManager(_Manager):
    """Dict, Queue and Volume: named objects kept at /v1/<plural>."""

    @live_method
    async def create(self, name: str, *, allow_existing: bool = False,
                     environment_name: str | None = None, **_: Any) -> None:
        """Make a named object; one of that name already there is an AlreadyExistsError unless
        allow_existing=True. Use from_name to get a handle on it."""
        resp = await client_mod.current().request(
            "POST", self._path, packed={"name": name, "exist_ok": True},
            environment=environment_name)
        if not resp.get("created", True) and not allow_existing:
            kind = getattr(self._owner, "__name__", "object")
            raise AlreadyExistsError(f"A {kind} named '{name}' exists already; pass "
                                     "allow_existing=True to accept it.")

    def _handle(self, row: dict[str, Any], environment_name: str | None, server: str) -> Any:
        obj = self._owner(row["name"], object_id=row["id"],  # type: ignore[misc]
                          environment_name=environment_name)
        obj._server = server
        return obj


class SecretManager(_Manager):
    """Secrets: named sets of environment variables at /v1/secrets."""

    @property
    def _path(self) -> str:
        return "/v1/secrets"

    @live_method
    async def create(self, name: str, env_dict: dict[str, str], *,
                     allow_existing: bool = False, environment_name: str | None = None,
                     **_: Any) -> None:
        """Store a named secret; one of that name already there is an AlreadyExistsError unless
        allow_existing=True (its values are kept)."""
        if not isinstance(env_dict, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env_dict.items()):
            raise InvalidError("Secret.objects.create takes a dict of str keys and str values.")
        try:
            await client_mod.current().request(
                "POST", self._path, body={"name": name, "env": env_dict},
                environment=environment_name)
        except AlreadyExistsError:
            if not allow_existing:
                raise

    def _handle(self, row: dict[str, Any], environment_name: str | None, server: str) -> Any:
        secret = self._owner(name=row["name"],  # type: ignore[misc]
                             environment_name=environment_name)  # its values stay on the server
        secret._ids[server] = row["id"]
        return secret
