"""Request body limits: an API request's body is counted as it arrives and refused with 413 once
it passes its cap, so no request makes the control plane hold more than that cap of it; and the
bodies of all requests together wait for room in a budget before they are read, so many
requests at once do not multiply that cap."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import wire
from ...wire import settings
from ..core.errors import ApiError, error_response
from . import ingress

MB = 1024 * 1024
ENVELOPE = MB  # room around a payload in a msgpack request: ids, options, the other fields
# A body is in memory twice while it is handled: its chunks and the joined bytes as it is read,
# then the bytes and what is parsed from them (an argument's bytes, a web request's message).
BODY_COPIES = 2
STREAMED = 2 * MB  # what a blob upload holds at once: the pieces waiting for the disk
BODY_WAIT = 30.0  # seconds a request waits for room in the budget before it is told to retry
RETRY_AFTER = "1"  # seconds, in the 503's Retry-After


def max_json_bytes() -> int:
    """The largest JSON (or other non-payload) request body, configurable by FIREBOX_MAX_JSON_MB."""
    return settings.MAX_JSON.get()


def max_blob_bytes() -> int:
    """The largest blob upload, configurable by FIREBOX_MAX_BLOB_MB."""
    return settings.MAX_BLOB.get()


def max_bodies_bytes() -> int:
    """The request bodies held at once, all requests together (FIREBOX_MAX_BODIES_MB); the web
    endpoints' bodies have a budget of this size of their own."""
    return settings.MAX_BODIES.get()


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


class Budget:
    """Bytes of request bodies in memory at once. A request takes its share before its body is
    read and gives it back when it has been answered; one that does not fit waits its turn,
    first come first served, so a large body is not passed over by a stream of small ones. A
    share larger than the whole budget is cut to it: that request goes alone."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int, timeout: float) -> bool:
        """Take size bytes, waiting up to timeout seconds for room; False if none came."""
        size = min(size, self.total)
        if not self._waiting and self.used + size <= self.total:
            self.used += size
            return True
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await asyncio.wait((entry[1],), timeout=timeout)
        except BaseException:  # the client went away while it waited
            self._leave(entry)
            raise
        if entry[1].done():
            return True
        self._leave(entry)
        return False

    def give(self, size: int) -> None:
        self.used -= min(size, self.total)
        self._wake()

    def _leave(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        size, granted = entry
        if granted.done():  # room came just as the wait ended
            self.give(size)
            return
        granted.cancel()
        self._waiting.remove(entry)
        self._wake()  # those behind it may fit now

    def _wake(self) -> None:
        while self._waiting and self.used + self._waiting[0][0] <= self.total:
            size, granted = self._waiting.popleft()
            self.used += size
            granted.set_result(None)


def api_body_share(scope: Scope) -> int:
    """What an API request's body may take of the budget: BODY_COPIES times its declared
    length, or its cap when it is sent without one (chunked); a streamed blob upload only the
    pieces it holds at once."""
    if scope["method"] == "PUT" and scope["path"].startswith("/v1/blobs/"):
        return STREAMED
    return _share(scope, body_limit(scope)[0])


def web_body_share(scope: Scope) -> int:
    """What a web endpoint's request body may take of the web endpoints' budget."""
    return _share(scope, ingress.max_body_bytes())


def _share(scope: Scope, limit: int) -> int:
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit():
        return BODY_COPIES * min(int(declared), limit)
    if _header(scope, b"transfer-encoding") is not None:
        return BODY_COPIES * limit
    return 0  # no body


class BodyBudget:
    """ASGI middleware: a request with a body waits for its share of the budget before the app
    reads it (its connection is not read meanwhile, beyond the server's 64 KiB buffer) and
    gives it back once answered. One that waits BODY_WAIT seconds in vain is answered 503 with
    Retry-After, unread; the firebox client sends it again."""

    def __init__(self, app: ASGIApp, budget: Budget, share: Callable[[Scope], int]) -> None:
        self.app = app
        self.budget = budget
        self.share = share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self.share(scope) if scope["type"] == "http" else 0
        if not size:
            await self.app(scope, receive, send)
            return
        if not await self.budget.take(size, BODY_WAIT):
            response = error_response(
                503, "RemoteError",
                f"The server is reading as many request bodies as its {self.budget.total // MB} "
                "MiB budget (FIREBOX_MAX_BODIES_MB) holds; send the request again in a moment.")
            response.headers["retry-after"] = RETRY_AFTER
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.give(size)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
