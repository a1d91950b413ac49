"""The control plane object: owns the database, blobs, scheduler and backend for one server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa

from ... import config
from ...backends.base import Backend
from ...backends.local import LocalBackend
from ...exception import InvalidError
from ...images.builder import Builder
from ...store import schema as s
from ...store.blobs import BlobStore
from ...store.db import Database
from ...wire import ids
from ...wire import settings as variables
from . import volumes
from .calls import Calls
from .capacity import Capacity
from .functions import FunctionRecord, merged_spec
from .logs import LogHub
from .metering import Meter, load_prices
from .model_keys import ModelKeys
from .model_limits import ModelLimits
from .model_usage import RequestLog
from .outputs import OutputLog
from .pools import Container
from .recovery import recover
from .sandboxes import SandboxManager
from .scheduler import Scheduler
from .schedules import Schedules
from .specs import options_problem, spec_problem
from .tunnels import Tunnels, trust_bundle
from .vault import Vault
from .waiters import Waiters
from .web_endpoints import WebEndpoints
from .workspaces import Identity

log = logging.getLogger("firebox.server")

HEARTBEAT_TIMEOUT = 60.0  # an ephemeral app whose client is silent this long is stopped


@dataclass
class Settings:
    state_dir: Path
    database_url: str
    url: str  # how containers and clients reach this server
    isolation: str | None = None  # containers' default isolation; None: the best available
    socket: Path | None = None  # a unix socket it also listens on, for its containers
    bind_host: str = "127.0.0.1"  # the interface its API listens on; sandbox tunnels too
    backend: str = "local"  # what launches containers: a name in BACKENDS
    # Where its own certificate authority for tunnels lives; None: <state>/tls.
    tls_dir: Path | None = None

    @property
    def tunnels_tls(self) -> Path:
        return self.tls_dir or self.state_dir / "tls"

    @classmethod
    def for_state_dir(cls, state_dir: Path, url: str, database_url: str | None = None) -> Settings:
        db = database_url or f"sqlite:///{state_dir / 'firebox.db'}"
        return cls(state_dir=state_dir, database_url=db, url=url)


def _local_backend(cp: ControlPlane) -> Backend:
    """Containers as child processes of this server, on this machine."""
    settings = cp.settings
    return LocalBackend(
        settings.state_dir / "containers",
        on_output=cp.logs.container_output,
        on_exit=cp.on_exit,
        isolation_mode=settings.isolation,
        hidden=[settings.state_dir, config.config_dir(), Path.home() / ".firebox"],
        standby_env={
            variables.SERVER_URL.name: settings.url,
            variables.IS_REMOTE.name: "1",
            variables.MODAL_IS_REMOTE.name: "1",
        },
        server_socket=settings.socket,
        ca_bundle=trust_bundle(settings.state_dir, settings.tunnels_tls),
    )


# Settings.backend -> what makes that backend for a control plane (its logs and on_exit).
BACKENDS: dict[str, Callable[[ControlPlane], Backend]] = {"local": _local_backend}


def make_backend(cp: ControlPlane) -> Backend:
    make = BACKENDS.get(cp.settings.backend)
    if make is None:
        raise InvalidError(f"There is no backend named {cp.settings.backend!r}; choose one of "
                           f"{', '.join(map(repr, BACKENDS))}.")
    return make(cp)


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database_url)
        self.blobs = BlobStore(settings.state_dir / "blobs")
        self.outputs = OutputLog(self.db)
        self.logs = LogHub(self.db)
        self.meter = Meter(self.db, settings.state_dir)
        self.prices = load_prices(settings.state_dir)
        self.backend = make_backend(self)
        self.scheduler = Scheduler(
            self.db,
            self.backend,
            self.outputs,
            self.logs,
            Capacity(self.backend.capacity()),
            container_env=self._container_env,
            meter=self.meter,
        )
        self.vault = Vault(settings.state_dir, self.db)
        self.started_at = time.time()
        self.model_keys = ModelKeys(self.db)  # the model gateway's own API keys
        self.model_limits = ModelLimits(self.db)
        self.model_requests = RequestLog(self.db)  # what the gateway metered, batched
        # The one way a call is made, read or cancelled.
        self.calls = Calls(self.db, self.outputs, self.scheduler, self.vault, self.load_function)
        self.waiters = Waiters()  # blocked Queue gets and puts, woken by changes
        # Ports of sandboxes and containers reached from outside (forward(), encrypted_ports=).
        self.tunnels = Tunnels(settings.tunnels_tls, settings.bind_host,
                               urlparse(settings.url).hostname or "127.0.0.1")
        self.sandboxes = SandboxManager(self)
        self.web_endpoints = WebEndpoints(self.db, settings.url, self.load_function,
                                          self.calls.accepts, self._adapters)
        self.images = Builder(settings.state_dir / "images", self.blobs, self.backend.hidden,
                              self.backend.netpool)
        self.image_builds: set[asyncio.Task[None]] = set()
        self.schedules = Schedules(self)  # Cron and Period runs
        self._tasks: list[asyncio.Task[None]] = []
        # Functions whose stored spec is not valid: id -> (app id, name, what is wrong).
        self.bad_functions: dict[str, tuple[str, str, str]] = {}
        self._closers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.db.migrate()
        self.db.start()
        await self.logs.open()
        now = time.time()
        await self.db.write(
            lambda conn: conn.execute(
                s.apps.update().where(s.apps.c.state == "ephemeral").values(heartbeat_at=now)
            )
        )
        closed = await self.meter.close_orphans()
        if closed:
            log.info("closed the metering of %d containers of the previous run", closed)
        rows = await self.db.read(sa.select(s.apps.c.id).where(s.apps.c.state == "stopped"))
        self.scheduler.stopped_apps.update(r[0] for r in rows)
        rows = await self.db.read(
            sa.select(s.workspaces.c.id, s.workspaces.c.isolation)
            .where(s.workspaces.c.isolation.is_not(None))
        )
        self.scheduler.workspace_isolation.update({r[0]: r[1] for r in rows})
        self.scheduler.start()
        rows = await self.db.read(
            sa.select(s.functions.c.id)
            .join(s.apps, s.apps.c.id == s.functions.c.app_id)
            .where(s.apps.c.state == "deployed")
        )
        for r in rows:
            fn = await self.load_function(r[0])
            if fn is not None:
                self.scheduler.ensure_warm(fn)
        for app_id, name, problem in {v[0]: v for v in self.bad_functions.values()}.values():
            await self.app_event(app_id, "failed", {"function": name, "problem": problem})
            await self.stop_app(app_id, f"failed at start: the stored spec of '{name}' is not "
                                        f"valid ({problem}); deploy the app again")
        recovered = await recover(self.scheduler, self.load_function)
        if recovered:
            log.info("queued %d accepted inputs again after a restart", recovered)
        self.backend.start_standby()
        await self.web_endpoints.load()
        await self.schedules.start()
        self._tasks.append(asyncio.create_task(self._expire_ephemeral_apps()))
        self._tasks.append(asyncio.create_task(self._mark_alive()))
        await self.sandboxes.start()

    async def close(self) -> None:
        self.schedules.stop()
        for t in [*self._tasks, *self._closers]:
            t.cancel()
        await self.sandboxes.close()
        await self.tunnels.close_all()
        await self.scheduler.shutdown()
        await self.backend.close()
        await self.outputs.commit_pending()
        await self.logs.stored()
        await self.db.close()

    def on_exit(self, container_id: str, returncode: int | None, cause: str,
                ended: float) -> None:
        """A container ended: the scheduler settles what it held; its forward()s end with it."""
        self.scheduler.on_container_exit(container_id, returncode, cause, ended)
        if self.tunnels.owned_by(f"{container_id}/"):  # its forward()s end with it
            task = asyncio.create_task(self.tunnels.close_all(f"{container_id}/"))
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    def _container_env(self, c: Container) -> dict[str, str]:
        fn = c.pool.function
        token = ids.container_token(c.id, c.token)
        image = fn.spec.get("image") or {}
        image_env = {str(k): str(v) for k, v in (image.get("env") or {}).items()}
        return image_env | self.vault.env_for(fn.spec, fn.workspace_id) | {
            variables.SERVER_URL.name: self.settings.url,
            variables.TOKEN.name: token,
            variables.CONTAINER_ID.name: c.id,
            variables.APP_ID.name: fn.app_id,
            variables.IS_REMOTE.name: "1",
            variables.MODAL_IS_REMOTE.name: "1",
            variables.MODAL_TASK_ID.name: c.id,
            variables.MODAL_ENVIRONMENT.name: fn.environment,
            # Mount path -> volume id; an isolating backend binds each at its real path.
            variables.VOLUMES.name: json.dumps(fn.spec.get("volumes") or {}),
            # Last, so no env= or secret can point the backend at other directories.
            variables.IMAGE_LAYERS.name: json.dumps(
                [str(self.images.path(lid)) for lid in image.get("layers") or ()]),
            variables.IMAGE_WORKDIR.name: image.get("workdir") or "",
            variables.IMAGE_CONFIG.name: json.dumps(image.get("config") or {}),
        } | _snapshot_key(c)

    async def resolve_image(self, workspace_id: str, spec: dict[str, Any]) -> str | None:
        """Put the stored record of the spec's image in it (layers, env, workdir), so a client
        can name only images its workspace built; returns a problem in words, or None."""
        image = spec.get("image")
        if not image:
            return None
        rows = await self.db.read(sa.select(s.images).where(
            s.images.c.id == str(image.get("image_id")),
            s.images.c.workspace_id == workspace_id))
        if not rows:
            return (f"its image {image.get('image_id')} was not built in this workspace; run "
                    "or deploy the app again to build it")
        row = rows[0]
        spec["image"] = {"image_id": row.id, "layers": json.loads(row.layers),
                         "env": json.loads(row.env), "workdir": row.workdir,
                         "config": json.loads(row.config) if row.config else {}}
        return None

    def container_identity(self, token: str) -> Identity | None:
        cid, secret = ids.parse_container_token(token)
        c = self.scheduler.authenticate(cid, secret)
        if c is None:
            return None
        fn = c.pool.function
        return Identity(fn.workspace_id, "container", c.id, environment=fn.environment)

    async def model_key_identity(self, token: str) -> Identity | None:
        """The identity a model gateway key gives: its workspace's environment, only on the
        OpenAI routes (api/auth.py)."""
        found = await self.model_keys.identify(token)
        if found is None:
            return None
        workspace_id, environment, key = found
        return Identity(workspace_id, "model_key", environment=environment, key=key)

    async def _adapters(self, volume_id: str) -> list[str]:
        """The directories at the root of a volume: a model server's LoRA adapters."""
        return [e[0] for e in await volumes.listdir(self, volume_id, "", False)
                if e[1] == "directory"]

    async def load_function(self, function_id: str) -> FunctionRecord | None:
        cached = self.scheduler.functions.get(function_id)
        if cached is not None:
            return cached
        rows = await self.db.read(
            sa.select(s.functions, s.apps.c.workspace_id, s.apps.c.environment)
            .join(s.apps, s.apps.c.id == s.functions.c.app_id)
            .where(s.functions.c.id == function_id)
        )
        if not rows or not rows[0].active:  # none, or left out of its app's latest deploy
            return None
        row = rows[0]
        try:
            stored = json.loads(row.spec)
        except ValueError:
            stored = None
        # A row stored before specs were checked at the door (or edited by hand) must not take
        # the server down: the function is left out, and said so once.
        # A variant's parent is the function it varies; a past version pinned by
        # from_name(version=) has its app as parent and a whole spec of its own.
        variant = bool(row.parent_id) and row.parent_id != row.app_id
        problem = ("its stored spec is not JSON" if not isinstance(stored, dict)
                   else options_problem(stored.get("options")) if variant
                   else spec_problem(stored))
        if problem is not None:
            if function_id not in self.bad_functions:
                log.error("function %s (%s) of app %s is left out: %s; deploy the app again",
                          row.name, row.id, row.app_id, problem)
            self.bad_functions[function_id] = (row.app_id, row.name, problem)
            return None
        if variant:
            parent = await self.load_function(row.parent_id)
            if parent is None:
                return None
            spec = merged_spec(json.dumps(parent.spec), stored.get("options"))
        else:
            spec = stored
        fn = FunctionRecord(row.id, row.app_id, row.workspace_id, row.name, spec,
                            row.environment)
        await self.vault.load(list(spec.get("secrets") or ()))
        self.scheduler.functions[function_id] = fn
        return fn

    async def retire_functions(self, function_ids: set[str]) -> None:
        """A deploy (or rollback) left these functions out of their app: new calls, schedules
        and URLs of them (and of their variants) stop; inputs already accepted still finish."""
        ids = function_ids | {
            r[0] for r in await self.db.read(
                sa.select(s.functions.c.id).where(s.functions.c.parent_id.in_(function_ids)))
        }
        for fid in ids:
            self.scheduler.functions.pop(fid, None)
            self.schedules.entries.pop(fid, None)
        for pool in self.scheduler.pools.values():
            if pool.function.id in ids:
                pool.retire()
        self.web_endpoints.unpublish(ids)

    async def replace_function(self, function_id: str) -> None:
        """Reload a function (and its variants) after a deploy changed its spec."""
        ids = [function_id] + [
            r[0]
            for r in await self.db.read(
                sa.select(s.functions.c.id).where(s.functions.c.parent_id == function_id)
            )
        ]
        for fid in ids:
            self.scheduler.functions.pop(fid, None)
        for fid in ids:
            fn = await self.load_function(fid)
            if fn is not None:
                self.scheduler.replace_function(fn)

    async def app_event(self, app_id: str, kind: str, detail: dict[str, Any]) -> None:
        now = time.time()
        await self.db.write(
            lambda conn: conn.execute(
                s.app_events.insert().values(
                    app_id=app_id, ts=now, kind=kind, detail=json.dumps(detail)
                )
            )
        )

    async def stop_app(self, app_id: str, reason: str) -> None:
        now = time.time()
        await self.db.write(
            lambda conn: conn.execute(
                s.apps.update().where(s.apps.c.id == app_id).values(state="stopped", stopped_at=now)
            )
        )
        await self.app_event(app_id, "stopped", {"reason": reason})
        self.scheduler.stop_app(app_id)
        task = asyncio.create_task(self._close_logs_when_gone(app_id))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close_logs_when_gone(self, app_id: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not self.scheduler.containers_of(app_id):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the last lines of output arrive
        self.logs.close_app(app_id)

    async def _mark_alive(self) -> None:
        while True:
            self.meter.touch_alive()
            await asyncio.sleep(2)

    async def _expire_ephemeral_apps(self) -> None:
        while True:
            await asyncio.sleep(5)
            try:
                cutoff = time.time() - HEARTBEAT_TIMEOUT
                rows = await self.db.read(
                    sa.select(s.apps.c.id).where(
                        s.apps.c.state == "ephemeral", s.apps.c.heartbeat_at < cutoff
                    )
                )
                for r in rows:
                    await self.stop_app(r[0], "its client stopped sending heartbeats")
            except Exception:
                log.exception("ephemeral app check failed")


def _snapshot_key(c: Container) -> dict[str, str]:
    """For a function with enable_memory_snapshot=True, the key its containers' template is
    made for: the function and its parameters (one template at a time for them), then all its
    spec holds (code, image, options). A web server's containers listen on one port each, which
    forks sharing the template's network could not: they start cold."""
    fn = c.pool.function
    webs = [fn.spec.get("web") or {}] + [m.get("web") or {} for m in
                                         (fn.spec.get("methods") or {}).values()]
    if not fn.spec.get("memory_snapshot") or any(w.get("type") == "web_server" for w in webs):
        return {}
    params = (c.pool.params or b"").hex()
    pool = hashlib.sha256(f"{fn.id}/{params}".encode()).hexdigest()[:16]
    content = hashlib.sha256(json.dumps(fn.spec, sort_keys=True, default=str).encode())
    return {variables.SNAPSHOT_KEY.name: f"{pool}:{content.hexdigest()}"}
