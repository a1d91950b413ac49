"""The Dict API: a durable key-value map per Dict, keys and values cloudpickled by the client."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import dicts
from . import requests as rq
from .bodies import msgpack_body, packed
from .objects import ObjectRoutes

DICTS = ObjectRoutes(dicts.DICTS, "dicts")


async def get(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    found, value = await dicts.get(cp, dict_id, body.key)
    return packed({"found": found, "value": value})


async def contains(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    return packed({"found": await dicts.contains(cp, dict_id, body.key)})


async def put(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictPut)
    cp, dict_id = await DICTS.target(request)
    return packed({"written": await dicts.put(cp, dict_id, body.items, body.skip_if_exists)})


async def pop(request: Request) -> Response:
    body = await msgpack_body(request, rq.DictKey)
    cp, dict_id = await DICTS.target(request)
    value = await dicts.pop(cp, dict_id, body.key)
    return packed({"found": value is not None, "value": value})


async def length(request: Request) -> Response:
    cp, dict_id = await DICTS.target(request)
    return packed({"len": await dicts.length(cp, dict_id)})


async def clear(request: Request) -> Response:
    cp, dict_id = await DICTS.target(request)
    await dicts.clear(cp, dict_id)
    return packed({})


async def entries(request: Request) -> Response:
    """A page of entries in key-hash order: keys, values or both."""
    body = await msgpack_body(request, rq.DictEntries)
    cp, dict_id = await DICTS.target(request)
    page, more = await dicts.entries(cp, dict_id, body.after)
    return packed({"entries": page, "more": more})


routes = [
    *DICTS.routes(),
    Route("/v1/dicts/{ref}/get", get, methods=["POST"]),
    Route("/v1/dicts/{ref}/contains", contains, methods=["POST"]),
    Route("/v1/dicts/{ref}/put", put, methods=["POST"]),
    Route("/v1/dicts/{ref}/pop", pop, methods=["POST"]),
    Route("/v1/dicts/{ref}/len", length, methods=["POST"]),
    Route("/v1/dicts/{ref}/clear", clear, methods=["POST"]),
    Route("/v1/dicts/{ref}/entries", entries, methods=["POST"]),
]
