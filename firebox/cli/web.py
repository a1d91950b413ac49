"""`firebox serve` (run an app and reload it when its files change) and `firebox token proxy`
(the proxy tokens that requires_proxy_auth web endpoints accept)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import click
from watchfiles import watch

from .. import _sync
from ..sdk.app import App
from ..sdk.package import module_name
from ..sdk.runner import publish
from .common import request, when
from .entrypoints import find_app, import_ref


def print_web_urls(app: App) -> None:
    for fname, fn in app.registered_functions.items():
        if fn._web_url:
            click.echo(f"  {fname} => {fn._web_url}")
        for method, url in fn._method_urls.items():
            click.echo(f"  {fname}.{method} => {url}")


def _watched(app: App) -> list[Path]:
    """The app's source files: those its code bundle holds."""
    bundle = app._bundle()
    modules = [m for m in app._modules if getattr(m, "__file__", None)]
    if bundle is None or not modules:
        return []
    root = Path(modules[0].__file__).resolve().parent
    for _ in range(module_name(modules[0]).count(".")):
        root = root.parent
    return [root / rel for rel in bundle.files]


def _folders(paths: list[Path]) -> list[Path]:
    """The folders that hold PATHS, watched one level deep each: an editor that saves by
    replacing the file leaves a watch on the file itself looking at the old one, and a
    recursive watch of the app's root would take in a .venv beside it."""
    return sorted({p.parent for p in paths if p.parent.is_dir()})


@click.command()
@click.argument("app_ref")
@click.option("--timeout", type=float, default=None,
              help="Stop serving after this many seconds (default: until Ctrl-C).")
@click.option("-m", "module_mode", is_flag=True,
              help="APP_REF is a module path (pkg.app), not a file.")
def serve(app_ref: str, timeout: float | None, module_mode: bool) -> None:
    """Run APP_REF's app and reload it whenever one of its files changes."""
    path, _, app_var = app_ref.partition("::")
    app = find_app(import_ref(path, module_mode), app_var or None)
    stop = threading.Event()
    if timeout is not None:
        timer = threading.Timer(timeout, stop.set)
        timer.daemon = True
        timer.start()
    with app.run():
        app_id = app.app_id
        click.echo(f"Serving app '{app.name or app_id}' ({app_id}); web functions:")
        print_web_urls(app)
        watched = {os.path.realpath(p) for p in _watched(app)}
        folders = _folders([Path(p) for p in watched])
        try:
            while not stop.is_set():
                if not folders:  # nothing on disk to watch (an app without source files)
                    stop.wait()
                    break
                # The filter reads `watched` as it is at each change, so a reload that keeps
                # the same folders carries on with this watch; one that moves them starts anew.
                for _ in watch(*folders, watch_filter=lambda _c, p: p in watched,
                               recursive=False, stop_event=stop):
                    try:
                        fresh = find_app(import_ref(path, module_mode), app_var or None)
                        _sync.run(publish(fresh, "ephemeral", fresh.name, app_id))
                    except Exception as exc:
                        click.echo(f"Reload failed, still serving the last version: {exc}",
                                   err=True)
                        continue
                    watched = {os.path.realpath(p) for p in _watched(fresh)}
                    click.echo("Reloaded; web functions:")
                    print_web_urls(fresh)
                    moved = _folders([Path(p) for p in watched])
                    if moved != folders:
                        folders = moved
                        break
        except KeyboardInterrupt:
            pass


@click.group("proxy")
def proxy_group() -> None:
    """Proxy tokens: the Modal-Key / Modal-Secret pairs web endpoints with
    requires_proxy_auth=True accept."""


@proxy_group.command("create")
def proxy_create() -> None:
    """Create a proxy token and print its key and secret (the secret is shown only once)."""
    resp = request("POST", "/v1/proxy-tokens")
    click.echo(f"Modal-Key: {resp['token_id']}")
    click.echo(f"Modal-Secret: {resp['token_secret']}")


@proxy_group.command("list")
def proxy_list() -> None:
    """List the workspace's proxy tokens."""
    for t in request("GET", "/v1/proxy-tokens")["tokens"]:
        click.echo(f"{t['token_id']}  {when(t['created_at'])}")


@proxy_group.command("delete")
@click.argument("token_id")
def proxy_delete(token_id: str) -> None:
    """Delete proxy token TOKEN_ID: endpoints refuse it from now on."""
    request("DELETE", f"/v1/proxy-tokens/{token_id}")
    click.echo(f"Deleted {token_id}.")
