"""The control plane's ASGI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ... import wire
from ..core import containers, queues
from ..core.errors import ApiError, error_response
from ..core.plane import ControlPlane, Settings
from ..gateways import baseten as baseten_gateway
from ..gateways import openai as openai_gateway
from ..gateways import replicate as replicate_gateway
from ..gateways import runpod as runpod_gateway
from ..gateways.engines import Engines
from . import apps as api
from . import blobs as api_blobs
from . import calls as api_calls
from . import containers as api_containers
from . import dicts as api_dicts
from . import environments as api_environments
from . import images as api_images
from . import ingress
from . import model_api as api_model_api
from . import queues as api_queues
from . import sandboxes as api_sandboxes
from . import scaling as api_scaling
from . import secrets as api_secrets
from . import tokens as api_tokens
from . import tunnels as api_tunnels
from . import volumes as api_volumes
from . import web as api_web
from . import workspace as api_workspace
from .auth import TokenAuth
from .limits import BodyBudget, BodyLimit, Budget, api_body_share, max_bodies_bytes, web_body_share

log = logging.getLogger("firebox.server")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "version": wire.VERSION})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.kind, exc.message)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up while sending its request: nobody is left to answer, nor an error."""
    return Response(status_code=499)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s", request.url.path, exc_info=exc)
    return error_response(
        500, "RemoteError", f"The server failed on this request ({type(exc).__name__}: {exc})."
    )


# Every route of the client API; all of them need a token. The model gateway's come first: they
# are the busiest, and routes are matched in order.
API_ROUTES = [*openai_gateway.routes, *api.routes, *api_calls.routes, *api_blobs.routes,
              *api_scaling.routes, *containers.routes, *api_web.routes, *api_dicts.routes,
              *api_queues.routes,
              *api_secrets.routes, *api_volumes.routes, *api_sandboxes.routes,
              *api_workspace.routes, *api_images.routes, *api_tunnels.routes,
              *api_containers.routes, *api_tokens.routes, *api_environments.routes,
              *api_model_api.routes,
              *runpod_gateway.routes, *replicate_gateway.routes, *baseten_gateway.routes]


def create_app(settings: Settings) -> ASGIApp:
    cp = ControlPlane(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await cp.start()
        sweeper = asyncio.create_task(queues.sweep_loop(cp))
        try:
            yield
        finally:
            sweeper.cancel()
            await app.state.engines.close()
            await cp.close()

    app = Starlette(
        routes=[Route("/health", health), *API_ROUTES],
        exception_handlers={ApiError: api_error, ClientDisconnect: client_gone,
                            Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.plane = cp
    # The model gateway's connections to engines in their containers.
    app.state.engines = Engines(cp.backend.connect, lambda cid: cid in cp.scheduler.containers)
    # Inside TokenAuth: a request without a valid token takes nothing of the budget. The public
    # web endpoints have a budget of their own, so their traffic cannot hold up the API.
    app.state.body_budget = budget = Budget(max_bodies_bytes())  # the call channel's too
    api_app = BodyLimit(TokenAuth(BodyBudget(app, budget, api_body_share),
                                  cp.db, cp.container_identity, cp.model_key_identity))
    web = BodyBudget(ingress.Ingress(cp), Budget(max_bodies_bytes()), web_body_share)

    async def root(scope: Scope, receive: Receive, send: Send) -> None:
        # Web functions answer the public on their hosts and at /web/...; everything else
        # needs a token.
        if scope["type"] != "lifespan" and cp.web_endpoints.serves(_host(scope), scope["path"]):
            await web(scope, receive, send)
        else:
            await api_app(scope, receive, send)

    return root


def _host(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return str(value.decode("latin-1"))
    return ""
