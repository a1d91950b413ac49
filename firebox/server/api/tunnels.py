"""forward() from inside a function's or class's container: its port reached from outside
through the server's tunnels (server/tunnels.py), for as long as the block or the container
lasts. Only a container may ask, and only for its own ports."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.errors import ApiError, invalid, not_found
from ..core.pools import Container
from . import requests as rq
from .apps import identity, msgpack_body, packed, plane


def _container(request: Request) -> Container:
    who = identity(request)
    if who.kind != "container" or who.container_id is None:
        raise invalid("forward() works only inside a firebox container (in a function or class "
                      "the app runs); for a sandbox's ports use Sandbox.create(encrypted_ports=).")
    c = plane(request).scheduler.containers.get(who.container_id)
    if c is None:
        raise not_found(f"Container {who.container_id} is not running.")
    return c


async def open_tunnel(request: Request) -> Response:
    body = await msgpack_body(request, rq.OpenTunnel)
    c = _container(request)
    port = body.port
    if c.pool.function.get("block_network"):
        raise invalid("This container was made with block_network=True, so nothing outside can "
                      "reach it; drop block_network to forward() a port.")
    tunnels = plane(request).tunnels
    owner = f"{c.id}/{port}"
    if tunnels.endpoints(owner):
        raise ApiError(409, "AlreadyExistsError",
                       f"Port {port} is forwarded already; leave the first forward() block "
                       "before opening another for it.")
    # The backend connects as a client inside the container would (it has a network of its own).
    dial = functools.partial(plane(request).backend.connect, c.id)
    opened = await tunnels.open(owner, dial, {port: not body.unencrypted})
    return packed(opened[port].to_json())


async def close_tunnel(request: Request) -> Response:
    c = _container(request)
    await plane(request).tunnels.close(f"{c.id}/{request.path_params['port']}")
    return packed({})


routes = [
    Route("/v1/tunnels", open_tunnel, methods=["POST"]),
    Route("/v1/tunnels/{port:int}", close_tunnel, methods=["DELETE"]),
]
