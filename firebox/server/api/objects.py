"""The routes every named object (Dict, Queue, Volume) has at /v1/<plural>: create (named or
ephemeral), list with each one's size, look up by name or id, delete and, where it may, rename."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.objects import Objects, OwnedIds
from . import requests as rq
from .apps import identity, msgpack_body, packed, plane

if TYPE_CHECKING:
    from ..core.plane import ControlPlane

# An object's size as listed, by id, for the ids given (a missing id has the sizes' defaults).
Sizes = Callable[["ControlPlane", list[str]], Awaitable[dict[str, dict[str, Any]]]]


def counted(column: sa.Column[Any]) -> Sizes:
    """Sizes as "len": how many rows of column's table each object has."""

    async def sizes(cp: ControlPlane, object_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await cp.db.read(
            sa.select(column, sa.func.count()).where(column.in_(object_ids)).group_by(column)
        )
        return {r[0]: {"len": r[1]} for r in rows}

    return sizes


@dataclass
class ObjectRoutes:
    """One kind of named object's common routes, and the cache of who owns which of its ids."""

    objects: Objects
    plural: str  # the path's and the listing's name: "dicts"
    sizes: Sizes
    empty: dict[str, Any]  # the sizes of an object sizes has nothing for
    looked_up: Sequence[str] = ("id", "name")  # the columns a lookup answers with
    deleted: Callable[[ControlPlane, str], None] | None = None  # after a delete, with the id
    renamable: bool = False
    owned: OwnedIds = field(init=False)

    def __post_init__(self) -> None:
        self.owned = OwnedIds(self.objects)

    async def target(self, request: Request) -> tuple[ControlPlane, str]:
        """The control plane and the id of the caller's object the path's {ref} names."""
        cp = plane(request)
        return cp, await self.owned.resolve(cp, identity(request), request.path_params["ref"])

    async def create(self, request: Request) -> Response:
        body = await msgpack_body(request, rq.CreateObject)
        cp, who = plane(request), identity(request)
        name = None if body.ephemeral else body.name or ""
        object_id, created = await self.objects.create(cp, who, name, body.exist_ok)
        return packed({"id": object_id, "created": created})

    async def listing(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        rows = await self.objects.list(cp, who)
        sizes = await self.sizes(cp, [r.id for r in rows]) if rows else {}
        return packed({self.plural: [
            {"id": r.id, "name": r.name, "created_at": r.created_at,
             **sizes.get(r.id, self.empty)}
            for r in rows
        ]})

    async def lookup(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        row = await self.objects.find(cp, who, request.path_params["ref"])
        return packed({column: getattr(row, column) for column in self.looked_up})

    async def delete(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        object_id = await self.objects.delete(cp, who, request.path_params["ref"])
        self.owned.forget(object_id)
        if self.deleted is not None:
            self.deleted(cp, object_id)
        return packed({"id": object_id})

    async def rename(self, request: Request) -> Response:
        body = await msgpack_body(request, rq.Rename)
        cp, who = plane(request), identity(request)
        await self.objects.rename(cp, who, request.path_params["ref"], body.name)
        return packed({})

    def routes(self) -> list[Route]:
        top = f"/v1/{self.plural}"
        return [
            Route(top, self.create, methods=["POST"]),
            Route(top, self.listing, methods=["GET"]),
            Route(top + "/{ref}", self.lookup, methods=["GET"]),
            Route(top + "/{ref}", self.delete, methods=["DELETE"]),
            *([Route(top + "/{ref}/rename", self.rename, methods=["POST"])]
              if self.renamable else []),
        ]
