"""Bringing an App up on a control plane: upload its code, register its functions, keep it
alive with heartbeats, show its containers' output, and stop it when the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from .. import _sync, config
from .. import client as client_mod
from ..exception import (
    ConnectionError,
    ImageBuildError,
    InvalidError,
    ServerNotInstalledError,
)
from ..wire import build_events
from ..wire.digests import sha256
from .attach import resolve_spec
from .blobs import upload_blobs
from .deployer import deployer
from .reporting import current_reporter
from .secret import resolve_all

if TYPE_CHECKING:
    from ..local import EmbeddedServer
    from .app import App
    from .image import Image

HEARTBEAT_EVERY = 10.0


async def publish(app: App, mode: str, name: str | None, app_id: str | None = None,
                  tag: str = "") -> str:
    """Create (or, for a deploy, update) the app on the server and register its functions;
    with app_id, register them again on that app (a reload: old containers are replaced).
    tag: a deploy's label, kept in the app's history."""
    if not app._functions:
        raise InvalidError(f"{app!r} has no functions; decorate some with @app.function().")
    c = client_mod.current()
    bundle = app._bundle()
    blobs: dict[str, bytes] = {}
    if bundle is not None:
        blobs.update({sha256(data): data for data in bundle.files.values()})
    serialized = {}
    for fname, data in app._serialized_blobs().items():
        digest = sha256(data)
        blobs[digest] = data
        serialized[fname] = digest
    specs = app._function_specs(bundle, serialized)
    for entry in specs:
        entry["spec"] = await resolve_spec(entry["spec"])
    await build_images(specs)
    created = app_id is None
    if app_id is None:
        resp = await c.request("POST", "/v1/apps", body={"name": name, "mode": mode})
        app_id = resp["app_id"]
        if mode == "ephemeral":
            current_reporter().step(f"Initialized app {app_id}.")
    try:
        await upload_blobs(blobs)
        body: dict[str, Any] = {"functions": specs, **({"tag": tag} if tag else {})}
        if mode == "deploy":
            files = [m.__file__ for m in app._modules if getattr(m, "__file__", None)]
            body["client"] = deployer(files[0] if files else None)
        resp = await c.request("POST", f"/v1/apps/{app_id}/functions", body=body)
    except BaseException:
        if created and mode == "ephemeral":  # a run that failed to start leaves no app behind
            with contextlib.suppress(Exception):
                await c.request("POST", f"/v1/apps/{app_id}/stop")
        raise
    for note in resp.get("notes") or ():  # what the server accepted but cannot serve yet
        print(f"Note: {note}", file=sys.stderr, flush=True)
    ids, web_urls = resp["ids"], resp.get("web_urls") or {}
    c.call_keys.update({ids[name]: key for name, key in resp["call_keys"].items()})
    for fname, fn in app._functions.items():
        fn._hydrate_from(ids[fname])
        fn._info = {}
        fn._web_url = web_urls.get(fname)
        fn._method_urls = {key.partition(".")[2]: url for key, url in web_urls.items()
                           if key.startswith(f"{fname}.")}
    app.app_id = app_id
    current_reporter().step("Created objects.", _made(app, bundle.files if bundle else {}))
    return app_id


def _made(app: App, code: dict[str, bytes]) -> list[str]:
    """What publishing made, a line each, as `Created objects.` lists it."""
    made = []
    if code:
        made.append(f"Created mount of the code: {len(code)} file{'s' * (len(code) != 1)}, "
                    f"{sum(map(len, code.values())) / 1e3:.1f} KB")
    for fname, fn in app._functions.items():
        kind = "class" if fn._spec.get("kind") == "class" else "function"
        if fn._web_url:
            made.append(f"Created web {kind} {fname} => {fn._web_url}")
        else:
            made.append(f"Created {kind} {fname}.")
        made += [f"Created web endpoint {fname}.{method} => {url}"
                 for method, url in fn._method_urls.items()]
    return made


async def build_images(specs: list[dict[str, Any]]) -> None:
    """Build each function's image on the server (once per distinct image), showing progress,
    and put what the server needs to run it in the spec in place of the Image."""
    built: dict[int, dict[str, Any]] = {}
    for entry in specs:
        image = entry["spec"].get("image")
        if image is None:
            continue
        if id(image) not in built:
            built[id(image)] = await build_image(image)
        entry["spec"]["image"] = built[id(image)]


async def build_image(image: Image) -> dict[str, Any]:
    await upload_blobs(image._blobs)
    c = client_mod.current()
    reporter = current_reporter()
    started = time.monotonic()
    result: dict[str, Any] | None = None
    body = image._build_request()
    if image._registry_secret is not None:  # the registry login: a Secret, sent by its id
        first = dict(body["steps"][0])
        first["secret_id"] = (await resolve_all([image._registry_secret]))[0]
        body["steps"] = [first, *body["steps"][1:]]
    async for event in c.stream_lines("/v1/images/build", method="POST", body=body):
        kind = event.get(build_events.TAG)
        if kind in (build_events.STEP, build_events.LOG, build_events.BUILT):
            reporter.image_event(event)
        elif kind == build_events.ERROR:
            raise ImageBuildError(
                f"Image build failed at step {event['index']} ({event['label']}); its log "
                f"ends:\n{event['log_tail']}\nFix the step and run again: the steps before it "
                "are cached."
            )
        elif kind == build_events.DONE:
            result = event
    if result is None:
        raise ImageBuildError("The image build ended without a result; run again.")
    reporter.image_done(result["image_id"], result.get("built", 0), time.monotonic() - started)
    return {k: result.get(k) for k in ("image_id", "layers", "env", "workdir", "config")}


async def deploy(app: App, name: str | None, tag: str = "",
                 environment_name: str | None = None) -> str:
    if not name:
        raise InvalidError("A deployed app needs a name: App('my-app') or --name.")
    if config.load() is None:
        raise ConnectionError(
            "Deploying needs a lasting server: start `firebox server` (or set FIREBOX_SERVER_URL "
            "and FIREBOX_TOKEN), then deploy again."
        )
    previous = config.choose_environment(environment_name) if environment_name else None
    try:  # the app, and the objects it names, in that environment
        app_id = await publish(app, "deploy", name, tag=tag)
    finally:
        if environment_name:
            config.choose_environment(previous)
    app.name = name
    return app_id


def print_log_line(line: dict[str, Any]) -> None:
    text, fn = line["text"], line.get("function") or "app"
    if line["stream"] == "stdout":
        print(f"[{fn}] {text}", flush=True)
    else:
        print(f"[{fn}] {text}", file=sys.stderr, flush=True)


class RunContext:
    """`with app.run():` and `async with app.run():` — an ephemeral app for the block."""

    def __init__(self, app: App, *, detach: bool, show_logs: bool,
                 environment_name: str | None = None) -> None:
        self.app = app
        self.environment = environment_name or None  # None: the client's
        self._previous_environment: str | None = None
        self.detach = detach
        self.show_logs = show_logs
        self.embedded: EmbeddedServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _connect(self) -> None:
        if self.environment:  # the block's requests go to it, as the app's do
            self._previous_environment = config.choose_environment(self.environment)
        if client_mod._override is not None or config.load() is not None:
            return
        # Imported here, not above: the embedded server brings the server's dependencies
        # (uvicorn, FastAPI, SQLAlchemy), which a client of a lasting server never loads.
        try:
            from ..local import EmbeddedServer
        except ServerNotInstalledError as exc:  # a client's install: say what else to do
            raise ServerNotInstalledError(
                f"No server is configured and the embedded one cannot start: {exc} Or point "
                "this client at a server: firebox token set --server URL --token TOKEN."
            ) from None

        self.embedded = EmbeddedServer().start()
        environment = self.environment or config.requested_environment()
        embedded = client_mod.Client(self.embedded.url, self.embedded.token,
                                     environment=environment)
        client_mod.use(embedded)
        if environment and environment != "main":  # a new server: the one asked for is made
            try:
                _sync.run(embedded.request("POST", "/v1/environments",
                                           body={"name": environment}, environment="main"))
            except BaseException:
                self._disconnect()
                raise

    def _disconnect(self) -> None:
        if self.environment:
            config.choose_environment(self._previous_environment)
        if self.embedded is not None:
            with contextlib.suppress(Exception):
                _sync.run(client_mod.current().close())
            client_mod.use(None)
            self.embedded.stop()
            self.embedded = None

    async def _start(self) -> None:
        try:
            app_id = await publish(self.app, "ephemeral", self.app.name)
        except ConnectionError as exc:
            if self.embedded is not None or client_mod._override is not None:
                raise
            raise ConnectionError(f"{exc} {config.embedded_hint()}") from None
        self._tasks.append(asyncio.create_task(self._heartbeat(app_id)))
        if self.show_logs:
            self._tasks.append(asyncio.create_task(self._follow_logs(app_id)))

    async def _heartbeat(self, app_id: str) -> None:
        c = client_mod.current()
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            with contextlib.suppress(Exception):
                await c.request("POST", f"/v1/apps/{app_id}/heartbeat")

    async def _follow_logs(self, app_id: str) -> None:
        c = client_mod.current()
        after = 0
        while True:
            try:
                async for line in c.stream_lines(
                    f"/v1/apps/{app_id}/logs", {"follow": "1", "after": after}
                ):
                    after = line["id"]
                    print_log_line(line)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)  # the server restarted: pick up where we were

    async def _stop(self) -> None:
        heartbeat = self._tasks[0] if self._tasks else None
        if heartbeat is not None:
            heartbeat.cancel()
        if self.app.app_id and not self.detach:
            with contextlib.suppress(Exception):
                await client_mod.current().request("POST", f"/v1/apps/{self.app.app_id}/stop")
        for task in self._tasks[1:]:
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError, Exception):
                task.cancel()
        self._tasks.clear()

    def __enter__(self) -> App:
        self._connect()
        try:
            _sync.run(self._start())
        except BaseException:
            _sync.run(self._stop())
            self._disconnect()
            raise
        return self.app

    def __exit__(self, *exc: object) -> None:
        try:
            _sync.run(self._stop())
        finally:
            self._disconnect()

    async def __aenter__(self) -> App:
        await asyncio.to_thread(self._connect)
        await _sync.run_async(self._start())
        return self.app

    async def __aexit__(self, *exc: object) -> None:
        try:
            await _sync.run_async(self._stop())
        finally:
            await asyncio.to_thread(self._disconnect)
