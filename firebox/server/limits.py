"""Request body limits: an API request's body is counted as it arrives and refused with 413 once
it passes its cap, so no request makes the control plane hold more than that cap of it."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import wire
from . import ingress
from .errors import ApiError, error_response

MB = 1024 * 1024
ENVELOPE = MB  # room around a payload in a msgpack request: ids, options, the other fields
JSON_MB_DEFAULT = 16  # FIREBOX_MAX_JSON_MB: specs, digests and names, never payloads
BLOB_MB_DEFAULT = 8192  # FIREBOX_MAX_BLOB_MB: a blob streams to disk, so this bounds the disk


def _mb(name: str, default: float) -> int:
    return int(float(os.environ.get(name) or default) * MB)


def max_json_bytes() -> int:
    """The largest JSON (or other non-payload) request body, configurable by FIREBOX_MAX_JSON_MB."""
    return _mb("FIREBOX_MAX_JSON_MB", JSON_MB_DEFAULT)


def max_blob_bytes() -> int:
    """The largest blob upload, configurable by FIREBOX_MAX_BLOB_MB."""
    return _mb("FIREBOX_MAX_BLOB_MB", BLOB_MB_DEFAULT)


def max_message_bytes() -> int:
    """The largest WebSocket message the server reads: a payload with its envelope (calls,
    containers' outputs), or a web endpoint's message if that is configured larger. A larger
    one is refused (close code 1009) before it is read."""
    return max(wire.max_payload_bytes(), ingress.max_message_bytes()) + ENVELOPE


def body_limit(scope: Scope) -> tuple[int, str]:
    """The cap on this request's body, and what to do about a body over it."""
    if scope["method"] == "PUT" and scope["path"].startswith("/v1/blobs/"):
        limit = max_blob_bytes()
        return limit, (f"A blob upload is larger than the {limit // MB} MiB this server "
                       "stores; raise FIREBOX_MAX_BLOB_MB on the server to store larger files.")
    content_type = _header(scope, b"content-type") or b""
    if content_type.startswith(wire.MSGPACK.encode()):
        limit = wire.max_payload_bytes() + ENVELOPE
        return limit, (f"The request is larger than the {limit // MB} MiB this server accepts; "
                       "send a smaller value, or raise FIREBOX_MAX_PAYLOAD_MB on the server.")
    limit = max_json_bytes()
    return limit, (f"The request body is larger than the {limit // MB} MiB this server accepts "
                   "for an API request; send less, or raise FIREBOX_MAX_JSON_MB on the server.")


class BodyTooLarge(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(413, "InvalidError", message)


class BodyLimit:
    """ASGI middleware: a declared Content-Length over the cap is refused before anything is
    read; a body without one (chunked) is counted as the app reads it, and the read that passes
    the cap raises BodyTooLarge, which the app answers as any ApiError: 413, the rest unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, message = body_limit(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(413, "InvalidError", message)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(message)
            return event

        async def watched(event: Message) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:  # read where no exception handler answers for the app
            if started:
                raise
            await error_response(exc.status, exc.kind, exc.message)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
