"""Every API route needs a bearer token that names a workspace: the middleware that checks it,
and resolves the environment of the workspace the request names (X-Firebox-Environment)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ...wire import ids
from ..core.environments import in_environment
from ..core.errors import ApiError, error_response
from ..core.workspaces import Identity, token_identity

if TYPE_CHECKING:
    from ...store.db import Database

PUBLIC_PATHS = {"/health"}
MODEL_API_PATHS = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
ENVIRONMENT_HEADER = b"x-firebox-environment"  # the client's ENVIRONMENT_HEADER


class TokenAuth:
    """ASGI middleware: resolves the bearer token to an Identity in scope["identity"]."""

    def __init__(self, app: ASGIApp, db: Database, container_identity: Any,
                 model_key_identity: Any) -> None:
        self.app = app
        self.db = db
        self.container_identity = container_identity
        self.model_key_identity = model_key_identity
        self.cache: dict[str, Identity] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        identity = await self.identify(token) if token else None
        if identity is None:
            message = (
                "No token was given; set FIREBOX_TOKEN or run `firebox server` once to write "
                "~/.firebox/config.toml."
                if not token
                else "The token was refused; check FIREBOX_TOKEN or ~/.firebox/config.toml "
                "against the server you are talking to."
            )
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
                return
            await error_response(401, "AuthError", message)(scope, receive, send)
            return
        if identity.key is not None and not model_api_path(scope["path"]):
            await error_response(403, "AuthError", "A model API key works on the model API "
                                 "only (/v1/models, /v1/chat/completions, /v1/completions, "
                                 "/v1/embeddings); use a firebox token for the rest.")(
                scope, receive, send)
            return
        try:  # a model API key is for its own environment only
            scope["identity"] = identity if identity.key is not None else await in_environment(
                self.db, identity, _header(scope, ENVIRONMENT_HEADER))
        except ApiError as exc:  # an environment the workspace does not have
            await error_response(exc.status, exc.kind, exc.message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def identify(self, token: str) -> Identity | None:
        if token.startswith(ids.CONTAINER_TOKEN):
            return self.container_identity(token)
        if token.startswith(ids.MODEL_KEY):
            return await self.model_key_identity(token)  # type: ignore[no-any-return]
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        identity = await token_identity(self.db, token)
        if identity is not None:
            self.cache[token] = identity
        return identity


def model_api_path(path: str) -> bool:
    """Whether a path is one of the model gateway's, which its own keys may use."""
    if path in MODEL_API_PATHS:
        return True
    rest = path.removeprefix("/v1/models/")
    return rest != path and "/" not in rest


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def _bearer(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer TOKEN`, or of `Api-Key TOKEN` (Baseten's scheme,
    which its clients send)."""
    text = _header(scope, b"authorization")
    if text is not None:
        scheme, _, token = text.partition(" ")
        if scheme.lower() in ("bearer", "api-key"):
            return token.strip()
    return None
