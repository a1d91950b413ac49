"""The Queue API: durable FIFOs, one per partition of a Queue, with blocking gets and puts that
hold the request up to MAX_WAIT seconds."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core import queues
from . import requests as rq
from .bodies import msgpack_body, packed
from .objects import ObjectRoutes
from .requests import MAX_WAIT

QUEUES = ObjectRoutes(queues.QUEUES, "queues")


async def put(request: Request) -> Response:
    """Append values to a partition; if it is full, wait up to `wait` seconds for room."""
    body = await msgpack_body(request, rq.QueuePut)
    cp, queue_id = await QUEUES.target(request)
    ok = await queues.put(cp, queue_id, body.partition, body.values, body.ttl,
                          min(body.wait, MAX_WAIT))
    return packed({"ok": ok})


async def get(request: Request) -> Response:
    """Take up to n values from the front of a partition, waiting up to `wait` for the first."""
    body = await msgpack_body(request, rq.QueueGet)
    cp, queue_id = await QUEUES.target(request)
    values = await queues.get(cp, queue_id, body.partition, body.n, min(body.wait, MAX_WAIT))
    return packed({"values": values})


async def items(request: Request) -> Response:
    """Values after item `after` without taking them (for iterate); waits for new ones."""
    body = await msgpack_body(request, rq.QueueItems)
    cp, queue_id = await QUEUES.target(request)
    found = await queues.items(cp, queue_id, body.partition, body.after,
                               min(body.wait, MAX_WAIT))
    return packed({"items": found})


async def length(request: Request) -> Response:
    body = await msgpack_body(request, rq.QueueLen)
    cp, queue_id = await QUEUES.target(request)
    return packed({"len": await queues.length(cp, queue_id, body.partition, body.total)})


async def clear(request: Request) -> Response:
    body = await msgpack_body(request, rq.QueueClear)
    cp, queue_id = await QUEUES.target(request)
    await queues.clear(cp, queue_id, body.partition, body.all)
    return packed({})


routes = [
    *QUEUES.routes(),
    Route("/v1/queues/{ref}/put", put, methods=["POST"]),
    Route("/v1/queues/{ref}/get", get, methods=["POST"]),
    Route("/v1/queues/{ref}/items", items, methods=["POST"]),
    Route("/v1/queues/{ref}/len", length, methods=["POST"]),
    Route("/v1/queues/{ref}/clear", clear, methods=["POST"]),
]
