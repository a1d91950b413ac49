"""The routes every named object (Dict, Queue, Volume) has at /v1/<plural>: create (named or
ephemeral), list with each one's size, look up by name or id, delete and, where it may, rename."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.objects import Objects
from . import requests as rq
from .bodies import identity, msgpack_body, packed, plane

if TYPE_CHECKING:
    from ..core.plane import ControlPlane


@dataclass
class ObjectRoutes:
    """One kind of named object's common routes."""

    objects: Objects
    plural: str  # the path's and the listing's name: "dicts"
    renamable: bool = False

    async def target(self, request: Request) -> tuple[ControlPlane, str]:
        """The control plane and the id of the caller's object the path's {ref} names."""
        cp = plane(request)
        return cp, await self.objects.resolve(cp, identity(request), request.path_params["ref"])

    async def create(self, request: Request) -> Response:
        body = await msgpack_body(request, rq.CreateObject)
        cp, who = plane(request), identity(request)
        name = None if body.ephemeral else body.name or ""
        object_id, created = await self.objects.create(cp, who, name, body.exist_ok)
        return packed({"id": object_id, "created": created})

    async def listing(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        return packed({self.plural: await self.objects.listing(cp, who)})

    async def lookup(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        return packed(await self.objects.lookup(cp, who, request.path_params["ref"]))

    async def delete(self, request: Request) -> Response:
        cp, who = plane(request), identity(request)
        return packed({"id": await self.objects.delete(cp, who, request.path_params["ref"])})

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
