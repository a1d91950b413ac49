"""Inside a container: a Truss's model class, loaded as Truss's server loads it, and Truss's
server API in front of it.

`TrussModel`'s `@enter` hook imports model/model.py from the package at /app (with its
packages/ dir on the path), makes the Model with the keyword arguments its __init__ declares
(config, data_dir, secrets, environment, or all of them for **kwargs) and runs load(). Its web
endpoint (`http`) answers Truss's routes: readiness `GET /v1/models/{name}` (503 while not
healthy), `POST /v1/models/{name}:predict` (JSON, or msgpack as application/octet-stream),
the OpenAI-shaped /v1/chat/completions, /v1/completions and /v1/embeddings of a model that has
those methods; `predict` is one prediction as a firebox input, for the Baseten-style API of the
control plane (server/gateways/baseten.py). Each prediction runs preprocess, predict and
postprocess; sync methods run in threads, at most runtime.predict_concurrency at once.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import yaml

from ..sdk.partial import enter, method
from ..sdk.web import asgi_app
from ..wire import settings

REMOTE_DIR = "/app"  # where the package is mounted, as in Truss's images
MSGPACK = "application/octet-stream"
OPENAI = {"/v1/chat/completions": "chat_completions", "/v1/completions": "completions",
          "/v1/embeddings": "embeddings"}


class BadInput(Exception):
    """The request's body does not fit the model's input type: a 400."""


async def _call(f: Callable[..., Any], *args: Any) -> Any:
    if inspect.iscoroutinefunction(f):
        return await f(*args)
    result = await asyncio.to_thread(f, *args)
    return await result if inspect.isawaitable(result) else result


def _takes_request(f: Callable[..., Any]) -> bool:
    params = list(inspect.signature(f).parameters.values())
    if len(params) < 2:
        return False
    annotation = params[1].annotation
    named = getattr(annotation, "__name__", None) or str(annotation)
    return params[1].name == "request" or named.endswith("Request")


class TrussModel:
    """A Truss's Model: Truss's server API (`http`) and one prediction (`predict`)."""

    @enter()
    async def start(self) -> None:
        root = Path(REMOTE_DIR)
        self.config = yaml.safe_load((root / "config.yaml").read_text()) or {}
        module_dir = self.config.get("model_module_dir", "model")
        filename = Path(self.config.get("model_class_filename", "model.py")).stem
        for extra in (root / self.config.get("bundled_packages_dir", "packages"), root):
            sys.path.insert(0, str(extra))
        module = importlib.import_module(f"{module_dir}.{filename}")
        model_class = getattr(module, self.config.get("model_class_name", "Model"))
        self.model = model_class(**self._arguments(model_class, root))
        self.name = self.config.get("model_name") or "model"
        self.gate = asyncio.Semaphore(int(settings.TRUSS_CONCURRENCY.get() or 1))
        self.ready = False
        if hasattr(self.model, "load"):
            await _call(self.model.load)
        self.ready = True

    def _arguments(self, model_class: type, root: Path) -> dict[str, Any]:
        """What Truss passes a Model's __init__: only what it declares, or all for **kwargs."""
        secrets = {name: _secret(name, default)
                   for name, default in (self.config.get("secrets") or {}).items()}
        offered = {"config": self.config, "data_dir": root / self.config.get("data_dir", "data"),
                   "secrets": secrets, "environment": {"name": "production"},
                   "lazy_data_resolver": None}
        if model_class.__init__ is object.__init__:  # no __init__ of its own
            return {}
        params = inspect.signature(model_class.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return offered
        return {k: v for k, v in offered.items() if k in params}

    # ---- one prediction ---------------------------------------------------------------------

    async def run(self, body: Any, request: Any = None) -> Any:
        """preprocess, predict (with the request if it takes one), postprocess."""
        import pydantic  # here and below: the container's (a client's install has none)

        predict = self.model.predict
        inputs = body
        annotation = next(iter(inspect.signature(predict).parameters.values())).annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            try:
                inputs = annotation.model_validate(body)
            except pydantic.ValidationError as exc:
                raise BadInput(str(exc)) from None
        async with self.gate:
            if hasattr(self.model, "preprocess"):
                inputs = await _call(self.model.preprocess, inputs)
            args = (inputs, request) if _takes_request(predict) else (inputs,)
            if inspect.isasyncgenfunction(predict) or inspect.isgeneratorfunction(predict):
                return predict(*args)  # streamed as it is made, not postprocessed
            result = await _call(predict, *args)
            if hasattr(self.model, "postprocess") and not inspect.isgenerator(result):
                result = await _call(self.model.postprocess, result)
        return result.model_dump() if isinstance(result, pydantic.BaseModel) else result

    @method()
    async def predict(self, body: str) -> Any:
        """One prediction for the control plane's Baseten-style API: yields its output as JSON
        text ({"output": ...}), or each streamed chunk ({"chunk": text}), or {"error", "status"}."""
        try:
            result = await self.run(json.loads(body))
        except BadInput as exc:
            yield json.dumps({"error": str(exc), "status": 400})
            return
        except Exception as exc:  # noqa: BLE001 (the user's error is the answer)
            yield json.dumps({"error": f"{type(exc).__name__}: {exc}", "status": 500})
            return
        if inspect.isasyncgen(result) or inspect.isgenerator(result):
            async for chunk in _chunks(result):
                yield json.dumps({"chunk": chunk.decode("utf-8", "replace")})
            return
        if _is_response(result):
            yield json.dumps({"output": bytes(result.body).decode("utf-8", "replace"),
                              "status": result.status_code})
            return
        yield json.dumps({"output": result})

    # ---- Truss's server API -----------------------------------------------------------------

    @asgi_app(requires_proxy_auth=True)
    def http(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def root(request: Request) -> Response:
            return JSONResponse(True)

        async def readiness(request: Request) -> Response:
            healthy = self.ready
            if healthy and hasattr(self.model, "is_healthy"):
                try:
                    healthy = bool(await _call(self.model.is_healthy))
                except Exception:  # noqa: BLE001 (a check that raises says: not healthy)
                    healthy = False
            if not healthy:
                return JSONResponse({"error": "Model is not ready."}, status_code=503)
            return JSONResponse({})

        async def predict(request: Request) -> Response:
            return await self._answer(request, "predict")

        async def openai(request: Request) -> Response:
            return await self._answer(request, OPENAI[request.url.path])

        routes = [Route("/", root), Route("/v1/models/{name}", readiness),
                  Route("/v1/models/{name}:predict", predict, methods=["POST"])]
        routes += [Route(path, openai, methods=["POST"]) for path in OPENAI]
        return Starlette(routes=routes)

    async def _answer(self, request: Any, method_name: str) -> Any:
        from starlette.responses import JSONResponse, Response, StreamingResponse

        if not self.ready:
            return JSONResponse({"error": "Model is not ready."}, status_code=503)
        packed = request.headers.get("content-type", "").startswith(MSGPACK)
        raw = await request.body()
        try:
            body = msgpack.unpackb(raw) if packed else json.loads(raw or b"null")
        except (ValueError, msgpack.UnpackException):
            return JSONResponse({"error": "The body is not valid JSON (or msgpack for "
                                 f"{MSGPACK})."}, status_code=400)
        try:
            if method_name == "predict":
                result = await self.run(body, request)
            else:
                f = getattr(self.model, method_name, None)
                if f is None:
                    return JSONResponse({"error": f"The model has no {method_name} method."},
                                        status_code=404)
                args = (body, request) if _takes_request(f) else (body,)
                result = f(*args) if inspect.isasyncgenfunction(f) else await _call(f, *args)
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # noqa: BLE001 (the user's error is the answer)
            print(f"firebox: the model's {method_name} raised {type(exc).__name__}: {exc}",
                  flush=True)
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
        if _is_response(result):
            return result
        if inspect.isasyncgen(result) or inspect.isgenerator(result):
            return StreamingResponse(_chunks(result), media_type="text/plain")
        if packed:
            return Response(msgpack.packb(result), media_type=MSGPACK)
        return JSONResponse(result)


def _is_response(value: Any) -> bool:
    from starlette.responses import Response

    return isinstance(value, Response)


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    """A generator's chunks as bytes: a sync generator is run in a thread, a chunk at a time."""
    if inspect.isasyncgen(stream):
        async for chunk in stream:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
        return
    done = object()
    while True:
        chunk = await asyncio.to_thread(next, stream, done)
        if chunk is done:
            return
        yield chunk if isinstance(chunk, bytes) else str(chunk).encode()


def _secret(name: str, default: Any) -> Any:
    """As Truss resolves a secret: /secrets/NAME, else the variable NAME or TRUSS_SECRET_NAME
    (from a firebox Secret, `--secret`), else config.yaml's default."""
    file = Path("/secrets") / name
    if file.is_file():
        return file.read_text().strip()
    return os.environ.get(name) or os.environ.get(f"TRUSS_SECRET_{name}") or default
