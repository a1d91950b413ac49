"""The client API of web endpoints: the workspace's proxy tokens."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...store import schema as s
from ...wire import ids
from ..core.errors import not_found
from ..core.web_endpoints import proxy_token_row
from .apps import identity, plane


async def create_proxy_token(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    key, secret = ids.new_proxy_token()
    row = proxy_token_row(who.workspace_id, key, secret)
    await cp.db.write(lambda conn: conn.execute(s.proxy_tokens.insert().values(**row)))
    return JSONResponse({"token_id": key, "token_secret": secret})


async def list_proxy_tokens(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    rows = await cp.db.read(
        sa.select(s.proxy_tokens.c.id, s.proxy_tokens.c.created_at)
        .where(s.proxy_tokens.c.workspace_id == who.workspace_id)
        .order_by(s.proxy_tokens.c.created_at)
    )
    return JSONResponse({"tokens": [{"token_id": r.id, "created_at": r.created_at}
                                    for r in rows]})


async def delete_proxy_token(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    key = request.path_params["token_id"]
    deleted = await cp.db.write(lambda conn: conn.execute(
        s.proxy_tokens.delete().where(s.proxy_tokens.c.id == key,
                                      s.proxy_tokens.c.workspace_id == who.workspace_id)
    ))
    if not deleted.rowcount:
        raise not_found(f"No proxy token '{key}' in this workspace.")
    cp.web_endpoints.forget_proxy_token(key)
    return JSONResponse({"deleted": key})


routes = [
    Route("/v1/proxy-tokens", create_proxy_token, methods=["POST"]),
    Route("/v1/proxy-tokens", list_proxy_tokens, methods=["GET"]),
    Route("/v1/proxy-tokens/{token_id}", delete_proxy_token, methods=["DELETE"]),
]
