"""Web decorators: fastapi_endpoint, asgi_app, wsgi_app and web_server mark a function as served
over HTTP through the control plane's ingress instead of being called with .remote()."""

from __future__ import annotations

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
