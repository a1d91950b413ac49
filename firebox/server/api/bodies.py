"""Reading a request and answering it: its JSON or msgpack body and its query, bounded and
counted before they are parsed and then checked against their models (requests.py); who sent
it and the control plane it is for; an answer packed as msgpack."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import Response

from ... import wire
from ..core.errors import ApiError, invalid
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from . import limits
from .requests import M, validate


def plane(request: Request) -> ControlPlane:
    return request.app.state.plane  # type: ignore[no-any-return]


def identity(request: Request) -> Identity:
    return request.scope["identity"]  # type: ignore[no-any-return]


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body, checked against model (422 naming the fields at fault)."""
    data = await request.body()
    if len(data) > limits.max_json_bytes():  # it may have come in labelled as msgpack
        raise limits.BodyTooLarge(limits.body_limit({"method": "POST", "path": "",
                                                     "headers": []})[1])
    # Every JSON value but the first follows a ',' or opens with '[' or '{': the count bounds
    # the objects the body can become, cheaply, before it is parsed.
    if data.count(b",") + data.count(b"[") + data.count(b"{") > MAX_ITEMS:
        raise too_many("The request body")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise invalid("The request body is not valid JSON; send a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return validate(model, body)


def check_size(size: int) -> None:
    """Refuse a request body larger than the largest payload plus room for its envelope."""
    if size > wire.max_payload_bytes() + 1024 * 1024:
        raise ApiError(413, "InvalidError", "The request is larger than the server accepts.")


# A body unpacks to many times its size in objects (an empty list is 56 bytes of Python for one
# byte of msgpack): at most this many items in all, so a body's objects stay within ~100 MB.
MAX_ITEMS = 1_000_000


def too_many(what: str) -> ApiError:
    return ApiError(413, "InvalidError", f"{what} holds more than {MAX_ITEMS:,} items; send "
                                         "them in several requests.")


def count_items(data: bytes, limit: int) -> int:
    """How many values a msgpack document holds, counted without building them (scalars are
    skipped in C), stopping once past limit: so a body that would unpack to too many objects is
    refused before a single one exists."""
    reader = msgpack.Unpacker(max_buffer_size=len(data) + 1, max_array_len=limit,
                              max_map_len=limit, max_str_len=len(data), max_bin_len=len(data))
    reader.feed(data)
    pending, seen = 1, 0
    while pending and seen <= limit:
        pending -= 1
        kind = data[reader.tell()]
        if 0x90 <= kind <= 0x9F or kind in (0xDC, 0xDD):  # an array: its items are next
            size = reader.read_array_header()
        elif 0x80 <= kind <= 0x8F or kind in (0xDE, 0xDF):  # a map: its keys and values
            size = 2 * reader.read_map_header()
        else:
            reader.skip()
            continue
        pending += size
        seen += size
    return seen


def unpack_map(data: bytes, what: str = "The request body") -> dict[str, Any]:
    check_size(len(data))
    try:
        if count_items(data, MAX_ITEMS) > MAX_ITEMS:
            raise too_many(what)
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except ApiError:
        raise
    except Exception:
        raise invalid(f"{what} is not valid msgpack.") from None
    if not isinstance(body, dict):
        raise invalid(f"{what} must be a msgpack map.")
    return body


async def msgpack_body(request: Request, model: type[M]) -> M:
    """The request's msgpack body, checked against model (422 naming the fields at fault)."""
    return validate(model, unpack_map(await request.body()))


def query(request: Request, model: type[M]) -> M:
    """The request's query parameters, checked against model."""
    return validate(model, dict(request.query_params), "The query")


def packed(message: Any, status: int = 200) -> Response:
    return Response(wire.pack(message), status_code=status, media_type=wire.MSGPACK)
