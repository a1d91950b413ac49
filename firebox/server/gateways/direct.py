"""The model gateway's short path (engines.py): a request the scheduler gave a container is
sent by the gateway to the engine's port there, its answer passed on to the client, and the
container's place freed when it ends (Calls.web_done). LoRA adapters are loaded by the gateway
too, through the engine's `POST /v1/load_lora_adapter`, once per replica."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.responses import JSONResponse, Response, StreamingResponse

from ... import wire
from ..core.model_routes import Target
from ..core.plane import ControlPlane
from ..core.pools import Container, Input
from .engines import EngineError, Engines
from .tokens import Usage, relay_stream

PASSED_BACK = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
LOAD_PATH = "/v1/load_lora_adapter"  # vLLM's, which SGLang and tinylm answer too


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "server_error", "param": None,
                                   "code": code}}, status_code=status)


async def _load_adapter(engines: Engines, c: Container, port: int,
                        target: Target) -> str | None:
    """Load the request's adapter into the replica's engine, unless it is there; what went
    wrong, or None."""
    router, name = target.router, target.adapter
    assert name is not None
    if name in router.loaded.get(c.id, ()):
        return None
    async with router.locks.setdefault((c.id, name), asyncio.Lock()):
        if name in router.loaded.get(c.id, ()):
            return None
        path = f"{target.config['adapters'].rstrip('/')}/{name}"
        body = json.dumps({"lora_name": name, "lora_path": path}).encode()
        response = await engines.send(c.id, port, LOAD_PATH, [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())], body)
        try:
            text = (await response.aread()).decode(errors="replace")
        finally:
            await response.aclose()
        if response.status != 200 and "already" not in text.lower():
            router.forget_adapter(c.id, name)
            return f"The engine did not load adapter `{name}` ({response.status}): {text}"
        router.loaded.setdefault(c.id, set()).add(name)
        return None


async def send(cp: ControlPlane, engines: Engines, inp: Input, c: Container, port: int,
               target: Target, path: str, headers: list[tuple[bytes, bytes]], body: bytes,
               stream: bool, strip_usage: bool, record: Usage) -> Response:
    started = time.monotonic()

    def done(status: str = wire.SUCCESS) -> None:
        cp.calls.web_done(inp, status, time.monotonic() - started)

    try:
        if target.adapter:
            problem = await _load_adapter(engines, c, port, target)
            if problem is not None:
                done()
                record.finish(502)
                return _error(502, problem, "adapter_not_loaded")
        response = await engines.send(c.id, port, path, headers, body)
    except (EngineError, OSError) as exc:
        done()
        record.finish(502)
        return _error(502, f"The engine of `{record.model}` did not answer: "
                      f"{type(exc).__name__}: {exc}", "engine_unreachable")
    except BaseException:
        done(wire.CANCELLED)
        raise
    status = response.status
    answer_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers
                      if k.lower() not in PASSED_BACK}
    if stream and status == 200:
        async def chunks() -> AsyncIterator[bytes]:
            ended = wire.CANCELLED
            try:
                async for chunk in response.aiter_stream():
                    yield chunk
                ended = wire.SUCCESS
            finally:
                await response.aclose()
                done(ended)

        return StreamingResponse(relay_stream(chunks(), record, strip_usage),
                                 status_code=status, headers=answer_headers)
    try:
        data = await response.aread()
    except EngineError as exc:
        record.finish(502)
        return _error(502, f"The engine of `{record.model}` broke off its answer: {exc}",
                      "engine_unreachable")
    finally:
        await response.aclose()
        done()
    record.read_answer(data if status == 200 else b"")
    record.finish(status)
    return Response(data, status_code=status, headers=answer_headers)

