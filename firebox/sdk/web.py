"""Web decorators: fastapi_endpoint, asgi_app, wsgi_app and web_server mark a function as served
over HTTP through the control plane's ingress instead of being called with .remote()."""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

from ..exception import InvalidError
from .partial import PartialFunction, _partial

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _check_label(label: str | None) -> None:
    if label is not None and not _LABEL.match(label):
        raise InvalidError(
            f"label {label!r} must be 1-63 lowercase letters, digits and dashes, not starting or "
            "ending with a dash."
        )


def _web(f: Any, config: dict[str, Any]) -> PartialFunction:
    p = _partial(f)
    if p.web is not None:
        raise InvalidError("A function can have only one web decorator.")
    p.flags.add("web")
    p.web = config
    return p


def fastapi_endpoint(_f: Any = None, *, method: str = "GET", label: str | None = None,
                     docs: bool = False, requires_proxy_auth: bool = False,
                     custom_domains: Any = None) -> Any:
    """Serve the function at its URL with FastAPI: arguments become query parameters, or the
    JSON body for dict and pydantic-model arguments."""
    if _f is not None:
        raise InvalidError("Use @firebox.fastapi_endpoint() with parentheses.")
    if method.upper() not in METHODS:
        raise InvalidError(f"method must be one of {', '.join(sorted(METHODS))}.")
    _check_label(label)
    config = {"type": "fastapi", "method": method.upper(), "label": label, "docs": bool(docs),
              "requires_proxy_auth": bool(requires_proxy_auth)}
    return lambda f: _web(f, config)


def asgi_app(_f: Any = None, *, label: str | None = None, requires_proxy_auth: bool = False,
             custom_domains: Any = None) -> Any:
    """Serve the ASGI app (Starlette, FastAPI, ...) that the function returns."""
    if _f is not None:
        raise InvalidError("Use @firebox.asgi_app() with parentheses.")
    _check_label(label)
    config = {"type": "asgi", "label": label, "requires_proxy_auth": bool(requires_proxy_auth)}
    return lambda f: _web(f, config)


def wsgi_app(_f: Any = None, *, label: str | None = None, requires_proxy_auth: bool = False,
             custom_domains: Any = None) -> Any:
    """Serve the WSGI app (Flask, Django, ...) that the function returns."""
    if _f is not None:
        raise InvalidError("Use @firebox.wsgi_app() with parentheses.")
    _check_label(label)
    config = {"type": "wsgi", "label": label, "requires_proxy_auth": bool(requires_proxy_auth)}
    return lambda f: _web(f, config)


def web_server(port: int, *, startup_timeout: float = 5.0, label: str | None = None,
               requires_proxy_auth: bool = False, custom_domains: Any = None) -> Any:
    """Serve whatever the function starts listening on `port` inside the container (a process
    like vLLM or SGLang); the container is ready once the port accepts connections."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidError("web_server needs a port between 1 and 65535.")
    if startup_timeout <= 0:
        raise InvalidError("startup_timeout must be a positive number of seconds.")
    _check_label(label)
    config = {"type": "web_server", "port": port, "startup_timeout": float(startup_timeout),
              "label": label, "requires_proxy_auth": bool(requires_proxy_auth)}
    return lambda f: _web(f, config)


def web_endpoint(_f: Any = None, *, method: str = "GET", label: str | None = None,
                 docs: bool = False, requires_proxy_auth: bool = False,
                 custom_domains: Any = None) -> Any:
    """The old name of fastapi_endpoint: it serves the same way, with a warning to rename it.
    (Modal's client now refuses it; apps written for older clients use it, so it is kept.)"""
    warnings.warn("@web_endpoint is deprecated: it was renamed to @fastapi_endpoint, which takes "
                  "the same arguments.", DeprecationWarning, stacklevel=2)
    return fastapi_endpoint(_f, method=method, label=label, docs=docs,
                            requires_proxy_auth=requires_proxy_auth,
                            custom_domains=custom_domains)


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
ROUTINGS = ("prefix", "least_loaded")


def model_api(_f: Any = None, *, models: list[str] | str, adapters: str | None = None,
              routing: str = "prefix") -> Any:
    """Serve a web function's OpenAI-compatible engine (a web_server running vLLM, SGLang,
    llama.cpp, ...) through the control plane's `/v1` under these model names. `adapters` is
    the mount path of a Volume holding LoRA adapters, one directory each, which the engine loads
    on demand; `routing="prefix"` sends requests that share a prompt prefix to one replica,
    "least_loaded" spreads them. The engine's concurrency is @firebox.concurrent's max_inputs."""
    if _f is not None:
        raise InvalidError("Use @firebox.model_api(models=[...]) with parentheses.")
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise InvalidError("model_api needs at least one model name: models=['my-model'].")
    for name in names:
        if not isinstance(name, str) or not _MODEL_NAME.match(name):
            raise InvalidError(f"Model name {name!r} must be 1-128 letters, digits and . _ / - "
                               "(':' separates a base model from an adapter in requests).")
    if adapters is not None and not (isinstance(adapters, str) and adapters.startswith("/")):
        raise InvalidError("adapters must be the mount path of a Volume, like '/adapters'.")
    if routing not in ROUTINGS:
        raise InvalidError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}.")
    config = {"names": names, "adapters": adapters, "routing": routing}

    def wrap(f: Any) -> PartialFunction:
        p = _partial(f)
        p.model = config
        return p

    return wrap


def check_web(name: str, spec: dict[str, Any], p: PartialFunction) -> None:
    """Put a web decorator's settings into the spec, refusing what a web function can't do."""
    if spec.get("retries"):
        raise InvalidError(f"Web function '{name}' cannot have retries.")
    if spec.get("is_generator"):
        raise InvalidError(f"Web function '{name}' cannot be a generator; stream with a "
                           "StreamingResponse instead.")
    if spec.get("batch_max_size"):
        raise InvalidError(f"Web function '{name}' cannot be @batched.")
    spec["web"] = _web_config(name, p)


def _web_config(where: str, p: PartialFunction) -> dict[str, Any]:
    """A web decorator's settings, with the model names @model_api gave it."""
    if p.web is None:
        raise InvalidError(f"'{where}' has @model_api but no web decorator: add the one that "
                           "serves its engine, like @firebox.web_server(8000).")
    web = dict(p.web)
    if p.model:
        web["model"] = dict(p.model)
    return web


def web_method(cls_name: str, attr: str, p: PartialFunction, base: dict[str, Any]
                ) -> dict[str, Any]:
    """A web method's entry in its class's spec: served at its own URL by the class's
    containers, refusing what a web method can't do."""
    where = f"{cls_name}.{attr}"
    if p.flags & {"method", "batched", "concurrent"}:
        raise InvalidError(
            f"Web method '{where}' cannot also be @method, @batched or @concurrent; put "
            "@firebox.concurrent on the class to serve requests concurrently."
        )
    if p.flags & {"enter", "exit"}:
        raise InvalidError(f"Web method '{where}' cannot also be an @enter or @exit hook.")
    if inspect.isgeneratorfunction(p.raw_f) or inspect.isasyncgenfunction(p.raw_f):
        raise InvalidError(f"Web method '{where}' cannot be a generator; stream with a "
                           "StreamingResponse instead.")
    if base.get("retries"):
        raise InvalidError(f"{cls_name} has web method '{attr}', and web requests cannot be "
                           "retried; remove retries= from @app.cls().")
    return {"is_generator": False, "batched": False, "web": _web_config(where, p)}


def check_web_parameters(cls_name: str, methods: dict[str, Any],
                          parameters: dict[str, Any]) -> None:
    """Web methods are served by the class's default instance, so every parameter needs a
    default."""
    if not any(m.get("web") for m in methods.values()):
        return
    for pname, p in parameters.items():
        if not p.get("has_default"):
            raise InvalidError(
                f"{cls_name} has web methods, which its default instance serves, so parameter "
                f"'{pname}' needs a default: firebox.parameter(default=...)."
            )
