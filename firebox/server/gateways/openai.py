"""OpenAI's API for the models of @model_api web functions, so `OpenAI(base_url=f"{server}/v1",
api_key=token)` works unchanged: `GET /v1/models`, `POST /v1/chat/completions`,
`/v1/completions` and `/v1/embeddings`, routed by the body's `model` to the deployed function
that serves it (core/model_routes.py), its replica chosen for the request's adapter and prompt
prefix (core/model_router.py).

Each request is an input of that function's pool, as a web request is (api/ingress.py): it
waits while a replica starts (up to FIREBOX_MODEL_START_WAIT_S, then a 503 with Retry-After),
counts toward autoscaling by requests in flight per replica (@concurrent max_inputs), and is
passed to the engine as it came, but for the model name of an adapter (`BASE:ADAPTER` becomes
the adapter's own name, which the engine serves it under) and, on a stream that did not ask for
it, `stream_options.include_usage` (whose final chunk the client is then not sent). Tool calls,
JSON mode, `n`, `logprobs` and the engine's errors come back as the engine gave them.

Every answered request is metered: prompt, completion and cached tokens from the engine's
`usage` (counted from the output where an engine gives none), priced per model per million
tokens (prices.toml's [models."NAME"] input/output), with time to first token, stored in
model_requests; limits (core/model_limits.py) are checked before a request goes out.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ... import wire
from ...wire import settings
from ..api.bodies import identity, plane
from ..api.ingress import Exchange, _failure
from ..api.limits import max_json_bytes
from ..core.model_limits import Limited
from ..core.model_router import Hint, prefix_blocks
from ..core.model_routes import Target
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from . import direct
from .tokens import Usage, relay_stream

ENDPOINTS = {"/v1/chat/completions": "chat/completions", "/v1/completions": "completions",
             "/v1/embeddings": "embeddings"}
DROPPED_HEADERS = {b"authorization", b"cookie", b"host", b"content-length", b"api-key",
                   b"transfer-encoding", b"connection"}
RETRY_STARTING = 10  # seconds a client is told to wait for a replica that is still starting


class ModelExchange(Exchange):
    """A gateway request in flight, with what the router needs to know of it. A direct one is
    sent to the engine's port by the gateway (engines.py) once it is given a container."""

    __slots__ = ("hint", "direct")

    def __init__(self, hint: Hint, direct: bool) -> None:
        super().__init__()
        self.hint, self.direct = hint, direct

    def takes(self, c: Any) -> bool:
        self.queue.put_nowait(("assigned", c, None))  # the wait for a replica is over
        return self.direct


def _short_path(cp: ControlPlane, target: Target) -> int | None:
    fn = target.function
    mode = (fn.get("isolation") or cp.scheduler.workspace_isolation.get(fn.workspace_id)
            or cp.backend.isolation)
    return cp.web_endpoints.models.short_path(target, mode)


def error(status: int, message: str, kind: str, code: str | None = None,
          param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """OpenAI's error document."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def _no_model(model: str) -> JSONResponse:
    return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                 "invalid_request_error", "model_not_found", "model")


def _prompt_text(doc: dict[str, Any]) -> str:
    """The text a request's prompt is made of, in order, for prefix routing and for counting
    tokens where an engine reports none."""
    if isinstance(doc.get("messages"), list):
        parts = []
        for m in doc["messages"]:
            if isinstance(m, dict):
                content = m.get("content")
                if isinstance(content, list):  # content parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                parts.append(f"<{m.get('role')}>{content if isinstance(content, str) else ''}")
        return "".join(parts)
    prompt = doc.get("prompt", doc.get("input"))
    if isinstance(prompt, list):
        return "".join(p if isinstance(p, str) else json.dumps(p) for p in prompt)
    return prompt if isinstance(prompt, str) else ""


# ---- models --------------------------------------------------------------------------------


async def _visible(cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    key = who.key
    found = await cp.web_endpoints.models.models(who)
    return [m for m in found if key is None or key.allows(m["id"])]


def _model_object(m: dict[str, Any], created: int) -> dict[str, Any]:
    out = {"id": m["id"], "object": "model", "created": created, "owned_by": "firebox"}
    if m.get("parent"):
        out["parent"] = m["parent"]
    return out


async def list_models(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    created = int(cp.started_at)
    return JSONResponse({"object": "list", "data": [_model_object(m, created)
                                                    for m in await _visible(cp, who)]})


async def get_model(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    name = request.path_params["model"]
    for m in await _visible(cp, who):
        if m["id"] == name:
            return JSONResponse(_model_object(m, int(cp.started_at)))
    return _no_model(name)


# ---- requests ------------------------------------------------------------------------------


async def forward(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    endpoint = ENDPOINTS[request.url.path]
    body = await request.body()
    if len(body) > max_json_bytes():
        return error(413, "The request body is larger than this server takes.",
                     "invalid_request_error")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return error(400, "The request body is not valid JSON.", "invalid_request_error")
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, str) or not model:
        return error(400, "You must provide a model parameter.", "invalid_request_error",
                     param="model")
    key = who.key
    target = await cp.web_endpoints.models.find(who, model)
    if target is None or (key is not None and not key.allows(model)):
        return _no_model(model)
    try:
        ticket = await cp.model_limits.admit(who.workspace_id, key.id if key else None,
                                             key.limits if key else None)
    except Limited as exc:
        return error(429, exc.message, exc.kind, exc.code,
                     headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
    record = Usage(cp, who, target, model, endpoint, ticket)
    record.stream = bool(doc.get("stream"))
    try:
        return await _send(cp, request, doc, body, target, record)
    except BaseException:
        record.finish(499)
        raise


async def _send(cp: ControlPlane, request: Request, doc: dict[str, Any], body: bytes,
                target: Target, record: Usage) -> Response:
    stream = record.stream
    strip_usage = False
    if target.adapter:
        doc["model"] = target.adapter
    if stream and endpoint_streams(record.endpoint):
        options = doc.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage")):
            doc["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                     "include_usage": True}
            strip_usage = True
    if target.adapter or strip_usage:
        body = json.dumps(doc).encode()
    prompt = _prompt_text(doc)
    record.prompt_chars = len(prompt)
    hint = Hint(target.adapter, prefix_blocks(prompt) if target.router.prefix else [])
    headers = [(k, v) for k, v in request.scope["headers"] if k not in DROPPED_HEADERS]
    headers.append((b"content-length", str(len(body)).encode()))
    port = _short_path(cp, target)
    if target.adapter and port is None:  # the container's runtime loads it (runtime/adapters)
        headers.append((b"x-firebox-adapter", target.adapter.encode()))
    call = {"method": "POST", "path": request.url.path, "root_path": "", "query": b"",
            "headers": headers, "body": body, "scheme": "http", "client": None,
            "http_version": "1.1"}
    exchange = ModelExchange(hint, port is not None)
    inp = cp.calls.serve(target.function, target.method, call, exchange, router=target.router)
    record.call_id = inp.call_id
    wait = settings.MODEL_START_WAIT.get()
    try:
        first = await _first(exchange, wait)
    except TimeoutError:
        cp.calls.cancel_web(inp.call_id)
        record.finish(503)
        return error(503, f"The model `{record.model}` is starting and no replica was ready "
                     f"within {wait:g} s; retry shortly.", "server_error", "model_starting",
                     headers={"Retry-After": str(RETRY_STARTING)})
    record.container_id = inp.ran_on
    if first[0] == "assigned" and port is not None:
        return await direct.send(cp, request.app.state.engines, inp, first[1], port,
                                 target, request.url.path, headers, body,
                                 stream, strip_usage, record)
    if first[0] == "assigned":  # the container's runtime passes it on: wait for its answer
        first = await _first(exchange, None)
    if first[0] == "finish":
        status, reason = _failure(first[1], first[2])
        record.finish(status)
        return error(status, reason, "server_error")
    start = first[1]
    status = int(start.get("status", 502))
    response_headers = {k.decode("latin-1"): v.decode("latin-1")
                        for k, v in start.get("headers") or []
                        if k.lower() not in (b"content-length", b"transfer-encoding")}
    if target.adapter and status != 200:
        target.router.forget_adapter(inp.ran_on or "", target.adapter)
    chunks = _body(cp, exchange, start, inp.call_id)
    if stream and status == 200:
        return StreamingResponse(relay_stream(chunks, record, strip_usage), status_code=status,
                                 headers=response_headers)
    data = b"".join([c async for c in chunks])
    record.read_answer(data if status == 200 else b"")
    record.finish(status)
    return Response(data, status_code=status, headers=response_headers)


def endpoint_streams(endpoint: str) -> bool:
    return endpoint in ("chat/completions", "completions")


async def _first(exchange: ModelExchange, wait: float | None) -> tuple[str, Any, Any]:
    """The request's next news: given a replica, its response's start, or its end; a
    TimeoutError past wait seconds."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        if deadline is None:
            kind, a, b = await exchange.queue.get()
        elif deadline <= time.monotonic():
            raise TimeoutError
        else:
            kind, a, b = await asyncio.wait_for(exchange.queue.get(),
                                                deadline - time.monotonic())
        if kind != "event" or "status" in a:
            return kind, a, b


async def _body(cp: ControlPlane, exchange: ModelExchange, start: dict[str, Any],
                call_id: str) -> AsyncIterator[bytes]:
    """The response's body, as the engine sends it."""
    try:
        message: dict[str, Any] | None = start
        while True:
            if message is not None:
                if message.get("body"):
                    yield message["body"]
                if message.get("end"):
                    return
            kind, a, b = await exchange.queue.get()
            if kind == "finish":
                if a != wire.SUCCESS and a != wire.CANCELLED:
                    raise ConnectionAbortedError(_failure(a, b)[1])
                return
            message = a
    finally:
        cp.calls.cancel_web(call_id)  # a no-op once it ended; else the client went away


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model}", get_model, methods=["GET"]),
    *[Route(path, forward, methods=["POST"]) for path in ENDPOINTS],
]
