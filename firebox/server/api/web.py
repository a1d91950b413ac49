"""The client API of web endpoints: the workspace's proxy tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .bodies import identity, plane


async def create_proxy_token(request: Request) -> JSONResponse:
    key, secret = await plane(request).web_endpoints.create_proxy_token(
        identity(request).workspace_id)
    return JSONResponse({"token_id": key, "token_secret": secret})


async def list_proxy_tokens(request: Request) -> JSONResponse:
    tokens = await plane(request).web_endpoints.proxy_tokens(identity(request).workspace_id)
    return JSONResponse({"tokens": tokens})


async def delete_proxy_token(request: Request) -> JSONResponse:
    key = request.path_params["token_id"]
    await plane(request).web_endpoints.delete_proxy_token(identity(request).workspace_id, key)
    return JSONResponse({"deleted": key})


routes = [
    Route("/v1/proxy-tokens", create_proxy_token, methods=["POST"]),
    Route("/v1/proxy-tokens", list_proxy_tokens, methods=["GET"]),
    Route("/v1/proxy-tokens/{token_id}", delete_proxy_token, methods=["DELETE"]),
]
