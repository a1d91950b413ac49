"""forward() from inside a function's or class's container: the routes that open and close a
tunnel to one of its ports (core/forwards.py); the certificate tunnels are served under."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import forwards
from . import requests as rq
from .bodies import identity, msgpack_body, packed, plane


async def open_tunnel(request: Request) -> Response:
    body = await msgpack_body(request, rq.OpenTunnel)
    opened = await forwards.open_forward(plane(request), identity(request), body.port,
                                         body.unencrypted)
    return packed(opened.to_json())


async def close_tunnel(request: Request) -> Response:
    await forwards.close_forward(plane(request), identity(request), request.path_params["port"])
    return packed({})


async def tls_ca(request: Request) -> Response:
    """The certificates a client trusts for this server's tunnels (`firebox token set` saves
    them)."""
    return packed({"pem": plane(request).tunnels.ca().decode()})


routes = [
    Route("/v1/tls/ca", tls_ca, methods=["GET"]),
    Route("/v1/tunnels", open_tunnel, methods=["POST"]),
    Route("/v1/tunnels/{port:int}", close_tunnel, methods=["DELETE"]),
]
