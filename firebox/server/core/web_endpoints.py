"""Web endpoints: which web function serves each URL on the control plane's port, and who may
call one that requires proxy auth.

A web function of workspace W is served under `/web/W/SLUG`, where SLUG is its label, or
`APP-FUNCTION` when it has none (`APP-CLASS-METHOD` for a web method of a class); functions of
ephemeral apps (`firebox run`, `firebox serve`, `app.run()`) get `-dev` appended, so a dev run
never takes over a deployed URL, and those of an environment other than main get `ENV--` before
it, so the same app deployed in two environments has two URLs. The newest registration of a URL
wins. The ingress
(api/ingress.py) serves them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from ...wire import ids
from .errors import not_found
from .functions import FunctionRecord

PREFIX = "/web/"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63] or "app"


def web_entries(spec: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """What a function serves over HTTP: its own web config under None, and a class's web
    methods under their names."""
    entries: dict[str | None, dict[str, Any]] = {}
    if spec.get("web"):
        entries[None] = spec["web"]
    for name, info in (spec.get("methods") or {}).items():
        if info.get("web"):
            entries[name] = info["web"]
    return entries


class WebEndpoints:
    def __init__(self, db: Database, url: str,
                 load_function: Callable[[str], Awaitable[FunctionRecord | None]]) -> None:
        self.db = db
        self.url = url  # the control plane's, which the endpoints' URLs start with
        self.load_function = load_function
        # (workspace name, slug) -> function id and, for a class's web method, its name
        self.routes: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.workspaces: dict[str, str] = {}  # workspace id -> name
        self.proxy_ok: dict[tuple[str, str], str] = {}  # (key, secret) -> workspace id

    # ---- routing ---------------------------------------------------------------------------

    async def workspace_name(self, workspace_id: str) -> str:
        name = self.workspaces.get(workspace_id)
        if name is None:
            rows = await self.db.read(
                sa.select(s.workspaces.c.name).where(s.workspaces.c.id == workspace_id)
            )
            name = self.workspaces[workspace_id] = slug(rows[0][0]) if rows else workspace_id
        return name

    async def url_for(self, fn: FunctionRecord, app_name: str | None, deployed: bool,
                      method: str | None = None) -> tuple[tuple[str, str], str]:
        """The route key and URL of a web function, or of a class's web method."""
        web = web_entries(fn.spec)[method]
        name = fn.name if method is None else f"{fn.name}-{method}"
        base = web.get("label") or slug(f"{app_name or fn.app_id}-{name}")
        if fn.environment != "main":
            base = f"{slug(fn.environment)}--{base}"
        path_slug = base if deployed else f"{base}-dev"
        ws = await self.workspace_name(fn.workspace_id)
        return (ws, path_slug), f"{self.url}{PREFIX}{ws}/{path_slug}"

    async def publish(self, fn: FunctionRecord, app_name: str | None, deployed: bool
                      ) -> dict[str | None, str]:
        """Route the URLs of what the function serves to it: its own URL under None, its web
        methods' under their names."""
        urls: dict[str | None, str] = {}
        for method in web_entries(fn.spec):
            key, urls[method] = await self.url_for(fn, app_name, deployed, method)
            self.routes[key] = (fn.id, method)
        return urls

    def unpublish(self, function_ids: set[str]) -> set[str]:
        """Stop routing the URLs of these functions (their environment was renamed); the ones
        that had any."""
        keys = [k for k, (fid, _method) in self.routes.items() if fid in function_ids]
        return {self.routes.pop(k)[0] for k in keys}

    async def load(self) -> None:
        """Route the web functions of deployed apps after a start."""
        rows = await self.db.read(
            sa.select(s.functions.c.id, s.apps.c.name)
            .join(s.apps, s.apps.c.id == s.functions.c.app_id)
            .where(s.apps.c.state == "deployed", s.functions.c.parent_id.is_(None))
        )
        for r in rows:
            fn = await self.load_function(r.id)  # None for a stored spec that is not valid
            if fn is not None and web_entries(fn.spec):
                await self.publish(fn, r.name, True)

    # ---- proxy auth ------------------------------------------------------------------------

    async def proxy_authorized(self, workspace_id: str, key: str, secret: str) -> bool:
        """Whether key and secret are a proxy token of the workspace."""
        if not key or not secret:
            return False
        if self.proxy_ok.get((key, secret)) == workspace_id:
            return True
        rows = await self.db.read(
            sa.select(s.proxy_tokens.c.workspace_id, s.proxy_tokens.c.secret_hash).where(
                s.proxy_tokens.c.id == key
            )
        )
        if not rows or rows[0].workspace_id != workspace_id:
            return False
        if not secrets.compare_digest(rows[0].secret_hash, _secret_hash(secret)):
            return False
        self.proxy_ok[(key, secret)] = workspace_id
        return True

    async def create_proxy_token(self, workspace_id: str) -> tuple[str, str]:
        """A new proxy token of the workspace: its key and its secret, which only its hash
        is kept of."""
        key, secret = ids.new_proxy_token()
        row = {"id": key, "workspace_id": workspace_id, "secret_hash": _secret_hash(secret),
               "created_at": time.time()}
        await self.db.write(lambda conn: conn.execute(s.proxy_tokens.insert().values(**row)))
        return key, secret

    async def proxy_tokens(self, workspace_id: str) -> list[dict[str, Any]]:
        """The workspace's proxy tokens, oldest first, without their secrets."""
        rows = await self.db.read(
            sa.select(s.proxy_tokens.c.id, s.proxy_tokens.c.created_at)
            .where(s.proxy_tokens.c.workspace_id == workspace_id)
            .order_by(s.proxy_tokens.c.created_at)
        )
        return [{"token_id": r.id, "created_at": r.created_at} for r in rows]

    async def delete_proxy_token(self, workspace_id: str, key: str) -> None:
        """Delete one of the workspace's proxy tokens; it stops authorizing at once."""
        deleted = await self.db.write(lambda conn: conn.execute(
            s.proxy_tokens.delete().where(s.proxy_tokens.c.id == key,
                                          s.proxy_tokens.c.workspace_id == workspace_id)
        ))
        if not deleted.rowcount:
            raise not_found(f"No proxy token '{key}' in this workspace.")
        for cached in [k for k in self.proxy_ok if k[0] == key]:
            del self.proxy_ok[cached]


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
