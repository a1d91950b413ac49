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
from ..core.model_limits import Limited, Ticket
from ..core.model_router import Hint, prefix_blocks
from ..core.model_routes import Target
from ..core.plane import ControlPlane
from ..core.workspaces import Identity

ENDPOINTS = {"/v1/chat/completions": "chat/completions", "/v1/completions": "completions",
             "/v1/embeddings": "embeddings"}
DROPPED_HEADERS = {b"authorization", b"cookie", b"host", b"content-length", b"api-key",
                   b"transfer-encoding", b"connection"}
RETRY_STARTING = 10  # seconds a client is told to wait for a replica that is still starting


class ModelExchange(Exchange):
    """A gateway request in flight, with what the router needs to know of it."""

    __slots__ = ("hint",)

    def __init__(self, hint: Hint) -> None:
        super().__init__()
        self.hint = hint


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


def _key(who: Identity) -> Any:
    return getattr(who, "key", None)


async def _visible(cp: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    key = _key(who)
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
    key = _key(who)
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
    stream = bool(doc.get("stream"))
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
    if target.adapter:
        headers.append((b"x-firebox-adapter", target.adapter.encode()))
    call = {"method": "POST", "path": request.url.path, "root_path": "", "query": b"",
            "headers": headers, "body": body, "scheme": "http", "client": None,
            "http_version": "1.1"}
    exchange = ModelExchange(hint)
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
        return StreamingResponse(_relay_stream(chunks, record, strip_usage), status_code=status,
                                 headers=response_headers)
    data = b"".join([c async for c in chunks])
    record.read_answer(data if status == 200 else b"")
    record.finish(status)
    return Response(data, status_code=status, headers=response_headers)


def endpoint_streams(endpoint: str) -> bool:
    return endpoint in ("chat/completions", "completions")


async def _first(exchange: ModelExchange, wait: float) -> tuple[str, Any, Any]:
    """The container's first event for the request: its response's start, or its end."""
    deadline = time.monotonic() + wait
    while True:
        kind, a, b = await _get(exchange, deadline - time.monotonic())
        if kind == "finish" or "status" in a:
            return kind, a, b


async def _get(exchange: ModelExchange, timeout: float) -> tuple[str, Any, Any]:
    if timeout <= 0:
        raise TimeoutError
    return await asyncio.wait_for(exchange.queue.get(), timeout)


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


async def _relay_stream(chunks: AsyncIterator[bytes], record: Usage,
                        strip_usage: bool) -> AsyncIterator[bytes]:
    """Pass the engine's server-sent events on, one whole event at a time, reading the usage
    and the first token's time from them; the final usage chunk stays behind where the client
    did not ask for it."""
    pending = b""
    status = 200
    try:
        async for chunk in chunks:
            pending += chunk
            if b"\n\n" not in pending:
                continue
            complete, _, pending = pending.rpartition(b"\n\n")
            out = [event for event in complete.split(b"\n\n")
                   if record.read_event(event, strip_usage)]
            if out:
                yield b"\n\n".join(out) + b"\n\n"
        if pending:
            yield pending
    except BaseException:
        status = 499
        raise
    finally:
        record.finish(status)


class Usage:
    """One gateway request's metering: its tokens, time to first token, cost; written once."""

    def __init__(self, cp: ControlPlane, who: Identity, target: Target, model: str,
                 endpoint: str, ticket: Ticket) -> None:
        self.cp, self.who, self.target, self.model = cp, who, target, model
        self.endpoint, self.ticket = endpoint, ticket
        self.started = time.monotonic()
        self.created_at = time.time()
        self.call_id = ""
        self.container_id: str | None = None
        self.prompt_chars = 0
        self.prompt = self.completion = self.cached = 0
        self.counted_chunks = 0
        self.output_chars = 0
        self.has_usage = False
        self.ttft: float | None = None
        self.stream = False
        self.done = False

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.has_usage = True
        self.prompt = int(usage.get("prompt_tokens") or 0)
        self.completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            self.cached = int(details.get("cached_tokens") or 0)

    def read_answer(self, data: bytes) -> None:
        """A whole JSON answer: its usage, or its output's length to count from."""
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        self._usage(doc.get("usage"))
        for choice in doc.get("choices") or []:
            if isinstance(choice, dict):
                message = choice.get("message") or {}
                text = choice.get("text") or (message.get("content") if isinstance(
                    message, dict) else "") or ""
                self.output_chars += len(text) if isinstance(text, str) else 0

    def read_event(self, event: bytes, strip_usage: bool) -> bool:
        """Note what one server-sent event says; False for the one to hold back."""
        line = event.strip()
        if not line.startswith(b"data:"):
            return True
        data = line[5:].strip()
        if data == b"[DONE]":
            return True
        try:
            doc = json.loads(data)
        except ValueError:
            return True
        if not isinstance(doc, dict):
            return True
        if doc.get("usage"):
            self._usage(doc["usage"])
            if strip_usage and not doc.get("choices"):
                return False
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            text = choice.get("text") or delta.get("content") or delta.get("tool_calls")
            if text:
                if self.ttft is None:
                    self.ttft = time.monotonic() - self.started
                self.counted_chunks += 1
        return True

    def finish(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        counted = not self.has_usage and status == 200
        if counted:  # no usage from the engine: about four characters a token
            self.prompt = math.ceil(self.prompt_chars / 4)
            self.completion = self.counted_chunks or math.ceil(self.output_chars / 4)
        prices = self.cp.prices
        base = self.target.base
        cost = (self.prompt * prices.get(f"model_input:{base}", 0.0)
                + self.completion * prices.get(f"model_output:{base}", 0.0)) / 1e6
        self.cp.model_limits.release(self.ticket, self.prompt + self.completion, cost)
        duration = (time.monotonic() - self.started) * 1000
        key = _key(self.who)
        row = {"id": self.call_id or f"rejected-{time.time_ns()}",
               "workspace_id": self.who.workspace_id, "app_id": self.target.function.app_id,
               "function_id": self.target.function.id, "model": self.model[:260],
               "base": base, "adapter": self.target.adapter, "key_id": key.id if key else None,
               "container_id": self.container_id, "endpoint": self.endpoint,
               "status": status, "stream": self.stream, "prompt_tokens": self.prompt,
               "completion_tokens": self.completion, "cached_tokens": self.cached,
               "usage_counted": counted, "cost_usd": cost,
               "ttft_ms": self.ttft * 1000 if self.ttft is not None else None,
               "duration_ms": duration, "created_at": self.created_at}
        self.cp.model_requests.record(row)


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model}", get_model, methods=["GET"]),
    *[Route(path, forward, methods=["POST"]) for path in ENDPOINTS],
]
