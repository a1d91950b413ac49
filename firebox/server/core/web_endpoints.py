"""Web endpoints: which web function serves each URL on the control plane's port, and who may
call one that requires proxy auth.

Each web function has a host of its own, as on Modal: `SOURCE--LABEL.DOMAIN`, where SOURCE is
its workspace (`WORKSPACE-ENV` in an environment other than main) and LABEL its label=, or
`APP-FUNCTION` when it has none (`APP-CLASS-METHOD` for a web method of a class); functions of
ephemeral apps (`firebox run`, `firebox serve`, `app.run()`) get `-dev` appended, so a dev run
never takes over a deployed URL. A name over the 63 characters a DNS label holds is cut, with a
hash of the whole in it. DOMAIN is FIREBOX_WEB_DOMAIN: `localhost` by default, at the server's
own scheme and port, which browsers and curl resolve to this machine by themselves; a wildcard
domain for a real deployment. The app is at the root of its origin, so absolute paths and
redirects stay on it.

Clients that cannot reach the host get the same function under `/web/WORKSPACE/SLUG` on the
control plane's own host (SLUG: `ENV--` before the label outside main, then as above), where
the prefix is the ASGI root_path. The newest registration of a URL in a workspace wins; a host
another workspace's live function holds stays its own (that function's URL is its path form).
The ingress (api/ingress.py) serves them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import sqlalchemy as sa

from ...exception import InvalidError
from ...store import schema as s
from ...store.db import Database
from ...wire import ids
from ...wire import settings as variables
from .errors import not_found
from .functions import FunctionRecord, web_entries
from .model_routes import ModelRoutes

PREFIX = "/web/"
HOST_LABEL_MAX = 63  # characters in one DNS label


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "app"


def slug(text: str) -> str:
    return _slug(text)[:HOST_LABEL_MAX]


def host_label(source: str, label: str, suffix: str) -> str:
    """`SOURCE--LABEL` and the suffix, cut as Modal cuts one over 63 characters: the head, a
    dash and the first 6 hex digits of the whole name's SHA-256, then the suffix."""
    full = f"{source}--{label}{suffix}"
    if len(full) <= HOST_LABEL_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    head = full[:HOST_LABEL_MAX - len(digest) - 1 - len(suffix)].rstrip("-")
    return f"{head}-{digest}{suffix}"


class Endpoint(NamedTuple):
    path_key: tuple[str, str]  # (workspace name, slug) of the path form
    host: str | None  # its host's label under the domain; None where another workspace's
    url: str


class WebDomain:
    """Where endpoints' hosts are: FIREBOX_WEB_DOMAIN, a bare domain at the server's scheme and
    port, or a URL that names its own."""

    def __init__(self, server_url: str, raw: str) -> None:
        server = urlsplit(server_url)
        given = urlsplit(raw if "://" in raw else f"{server.scheme}://{raw}")
        try:
            port = given.port or (None if "://" in raw else server.port)
        except ValueError:
            port = -1
        if not given.hostname or given.path.strip("/") or port == -1:
            raise InvalidError(
                f"FIREBOX_WEB_DOMAIN={raw!r} is not a domain: set it to one (apps.example.com), "
                "or to the URL it is served at (https://apps.example.com:8443).")
        self.domain = given.hostname.strip(".")
        self.scheme = given.scheme
        self.port = f":{port}" if port else ""
        self.server_host = (server.hostname or "").lower()

    def url(self, label: str) -> str:
        return f"{self.scheme}://{label}.{self.domain}{self.port}"

    def label_of(self, host: str) -> str | None:
        """The part of a request's Host before the domain, where it is a host under the domain
        other than the control plane's own; None for any other host."""
        name = host.lower()
        if not name.endswith("]") and name.rpartition(":")[2].isdigit():
            name = name.rpartition(":")[0]
        name = name.rstrip(".")
        if name == self.server_host or not name.endswith(f".{self.domain}"):
            return None
        return name[:-len(self.domain) - 1]


class WebEndpoints:
    def __init__(self, db: Database, url: str,
                 load_function: Callable[[str], Awaitable[FunctionRecord | None]],
                 accepts: Callable[[FunctionRecord], bool],
                 list_adapters: Callable[[str], Awaitable[list[str]]]) -> None:
        self.db = db
        self.url = url  # the control plane's, which the path form's URLs start with
        self.domain = WebDomain(url, variables.WEB_DOMAIN.get())
        self.load_function = load_function
        self.accepts = accepts  # whether a function's app still takes calls
        # (workspace name, slug) -> function id and, for a class's web method, its name
        self.routes: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.hosts: dict[str, tuple[str, str | None]] = {}  # host label -> the same
        self.workspaces: dict[str, str] = {}  # workspace id -> name
        self.proxy_ok: dict[tuple[str, str], str] = {}  # (key, secret) -> workspace id
        # The model names of @model_api web functions, for the model gateway.
        self.models = ModelRoutes(load_function, accepts, list_adapters)

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
                      method: str | None = None) -> Endpoint:
        """Where a web function, or a class's web method, is served."""
        web = web_entries(fn.spec)[method]
        name = fn.name if method is None else f"{fn.name}-{method}"
        label = _slug(web.get("label") or f"{app_name or fn.app_id}-{name}")
        suffix = "" if deployed else "-dev"
        ws = await self.workspace_name(fn.workspace_id)
        env = "" if fn.environment == "main" else _slug(fn.environment)
        path_slug = slug(f"{env}--{label}" if env else label) + suffix
        host: str | None = host_label(f"{ws}-{env}" if env else ws, label, suffix)
        if not await self._host_free(host, fn):
            host = None
        url = self.domain.url(host) if host else f"{self.url}{PREFIX}{ws}/{path_slug}"
        return Endpoint((ws, path_slug), host, url)

    async def _host_free(self, host: str, fn: FunctionRecord) -> bool:
        """Whether fn may take the host: nobody holds it, or its own workspace, or a function
        whose app stopped."""
        held = self.hosts.get(host)
        if held is None or held[0] == fn.id:
            return True
        holder = await self.load_function(held[0])
        return (holder is None or holder.workspace_id == fn.workspace_id
                or not self.accepts(holder))

    async def publish(self, fn: FunctionRecord, app_name: str | None, deployed: bool
                      ) -> dict[str | None, str]:
        """Route the URLs of what the function serves to it: its own URL under None, its web
        methods' under their names."""
        urls: dict[str | None, str] = {}
        for method in web_entries(fn.spec):
            endpoint = await self.url_for(fn, app_name, deployed, method)
            self.routes[endpoint.path_key] = (fn.id, method)
            if endpoint.host:
                self.hosts[endpoint.host] = (fn.id, method)
            urls[method] = endpoint.url
            await self.models.publish(fn, method, web_entries(fn.spec)[method], deployed)
        return urls

    def unpublish(self, function_ids: set[str]) -> set[str]:
        """Stop routing the URLs of these functions (their environment was renamed); the ones
        that had any."""
        self.models.unpublish(function_ids)
        for host in [h for h, (fid, _method) in self.hosts.items() if fid in function_ids]:
            del self.hosts[host]
        keys = [k for k, (fid, _method) in self.routes.items() if fid in function_ids]
        return {self.routes.pop(k)[0] for k in keys}

    def route(self, host: str, path: str) -> tuple[tuple[str, str | None] | None, str, str]:
        """The function (and method) a request is for, by its Host first, then its path; with
        the root_path and path its app is given."""
        label = self.domain.label_of(host)
        if label is not None:
            return self.hosts.get(label), "", path
        parts = path.split("/", 4)  # "", "web", workspace, slug, rest
        if len(parts) < 4 or parts[1] != PREFIX.strip("/"):
            return None, "", path
        root = f"{PREFIX}{parts[2]}/{parts[3]}"
        rest = parts[4] if len(parts) > 4 else ""
        return self.routes.get((parts[2], parts[3])), root, f"{root}/{rest}"  # ASGI: with root

    def serves(self, host: str, path: str) -> bool:
        """Whether a request is the ingress's: to an endpoint's host, or under /web/."""
        return self.domain.label_of(host) is not None or path.startswith(PREFIX)

    async def load(self) -> None:
        """Route the web functions of deployed apps after a start, the oldest app's first (so
        a host two workspaces' apps ask for stays the one it was)."""
        rows = await self.db.read(
            sa.select(s.functions.c.id, s.apps.c.name)
            .join(s.apps, s.apps.c.id == s.functions.c.app_id)
            .where(s.apps.c.state == "deployed", s.functions.c.parent_id.is_(None))
            .order_by(s.apps.c.created_at)
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
