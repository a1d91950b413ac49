"""The `firebox` command."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import config
from ..exception import Error
from ..sdk import reporting
from ..sdk.deployer import client_version
from ..sdk.live import LiveReporter
from ..wire import settings as variables
from .common import fixed, print_logs, print_table, request, when
from .container import container_group
from .entrypoints import (
    build_command,
    find_app,
    find_app_and_runnable,
    find_runnable,
    import_ref,
)
from .environment import add_environment_option, environment_group
from .image import image_group
from .model_api import model_api_group
from .objects import dict_group, queue_group
from .packages import package_app, package_options
from .profile import profile_group
from .sandbox import sandbox_group
from .scaling import app_stats, usage
from .secret import secret_group
from .shell import shell
from .token import token_commands
from .tracebacks import users_traceback
from .volume import volume_group
from .web import proxy_group, serve
from .workspace import workspace_group


class FireboxGroup(click.Group):
    """Turns firebox errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            shown = users_traceback(exc)  # the user's code raised it: their frames are enough
            if shown is None:
                raise
            click.echo(shown, err=True, nl=False)
            click.echo(f"Error: the app raised {type(exc).__name__} (above).", err=True)
            sys.exit(1)


@click.group(cls=FireboxGroup)
@click.version_option(package_name="firebox")
def main() -> None:
    """firebox: self-hosted serverless compute for Python."""


def _split_ref(ref: str) -> tuple[str, str | None]:
    path, _, name = ref.partition("::")
    return path, name or None


# Options after APP_REF are the entrypoint's, as in Modal's `modal run`: its own -d, -e, ... go
# before APP_REF, so an entrypoint may have an --env or a --detach of its own.
@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "allow_interspersed_args": False, "help_option_names": []})
@click.argument("app_ref")
@click.option("-d", "--detach", is_flag=True, help="Keep the app running after the command.")
@click.option("-q", "--quiet", is_flag=True, help="Don't show container output.")
@click.option("-i", "--interactive", is_flag=True, help="Accepted for compatibility.")
@click.option("-m", "module_mode", is_flag=True,
              help="APP_REF is a module path (pkg.app or pkg.app::name), not a file.")
@click.pass_context
def run(ctx: click.Context, app_ref: str, detach: bool, quiet: bool, interactive: bool,
        module_mode: bool) -> None:
    """Run APP_REF (file.py, file.py::name, or with -m pkg.module[::name]) with an ephemeral
    app.

    Options after APP_REF go to the local entrypoint or function being run; `firebox run
    APP_REF --help` lists them.
    """
    if app_ref in ("--help", "-h"):  # help_option_names is empty so APP_REF's --help reaches it
        click.echo(ctx.get_help())
        return
    path, name = _split_ref(app_ref)
    module = import_ref(path, module_mode)
    app, name = find_app_and_runnable(module, name, path)
    label, signature, runner = find_runnable(app, name)
    command = build_command(label, signature, runner)
    args = list(ctx.args)
    if "--help" in args or "-h" in args:
        with click.Context(command, info_name=f"firebox run {app_ref}") as sub:
            click.echo(command.get_help(sub))
        return
    sub_ctx = command.make_context(f"firebox run {app_ref}", args)
    # Progress goes to stderr (the app's steps, a bar per map): stdout is the user's own output.
    try:
        with reporting.use(LiveReporter()), app.run(detach=detach, show_logs=not quiet), sub_ctx:
            command.invoke(sub_ctx)
    except KeyboardInterrupt:
        click.echo(_interrupted(app.app_id, detach), err=True)
        sys.exit(130)
    click.echo("✓ App completed." if not detach else
               f"✓ Done; app {app.app_id} keeps running (stop it with `firebox app stop "
               f"{app.app_id}`).", err=True)


def _interrupted(app_id: str | None, detach: bool) -> str:
    if app_id is None:
        return "Interrupted before the app started; nothing ran."
    if detach:
        return (f"Interrupted; app {app_id} keeps running (--detach), so inputs in flight "
                f"finish there. Stop it with `firebox app stop {app_id}`.")
    return (f"Interrupted; app {app_id} was stopped, so inputs in flight were cancelled and "
            "their results discarded. Use --detach to let them finish.")


@main.command()
@click.argument("app_ref")
@click.option("--name", help="Deploy under this name instead of the App's own.")
@click.option("--tag", default="", help="A label for this deployment, shown in its history.")
@click.option("-m", "module_mode", is_flag=True,
              help="APP_REF is a module path (pkg.app), not a file.")
@package_options
def deploy(app_ref: str, name: str | None, tag: str, module_mode: bool,
           **package: Any) -> None:
    """Deploy APP_REF (file.py[::app] or, with -m, pkg.module[::app]) to the configured server,
    replacing an earlier deploy of the same name. APP_REF may also be the directory of a
    RunPod worker, a Cog package or a Truss, deployed as it is (docs/formats.md)."""
    if Path(app_ref).is_dir() or package["format"]:
        app = package_app(Path(app_ref), name, package)
        name = app.name
    else:
        path, app_var = _split_ref(app_ref)
        module = import_ref(path, module_mode)
        app = find_app(module, app_var, typed=path)
    started = time.monotonic()
    with reporting.use(LiveReporter()) as reporter:  # each step on stderr as it happens
        app.deploy(name=name or app.name, tag=tag)
        reporter.step(f"App deployed in {time.monotonic() - started:.1f}s!")
    cfg = config.load()
    where = f" in environment '{cfg.environment}'" if cfg and cfg.environment not in (
        None, "main") else ""
    click.echo(f"Deployed app '{app.name}' ({app.app_id}){where} with:")
    for fname, fn in app.registered_functions.items():
        click.echo(f"  {fname}" + (f" => {fn._web_url}" if fn._web_url else ""))
        for method, url in fn._method_urls.items():
            click.echo(f"  {fname}.{method} => {url}")


@main.command()
@click.option("--host", default=config.DEFAULT_HOST, show_default=True,
              help="The address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", default=config.DEFAULT_PORT, show_default=True, type=int,
              help="The port to listen on.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where the database, blobs and container files live (~/.firebox/server).")
@click.option("--database-url", envvar=variables.DATABASE_URL.name, default=None,
              help="sqlite:///path or postgresql://user:pass@host/db (default: SQLite in "
                   "the state directory).")
@click.option("--isolation", envvar=variables.ISOLATION.name, default=None,
              type=click.Choice(["process", "namespaces", "gvisor"]),
              help="How containers of functions that don't choose are isolated (default: "
                   "namespaces where bubblewrap is installed, else process).")
@click.option("--backend", envvar=variables.BACKEND.name, default="local", show_default=True,
              help="What launches containers: 'local', child processes on this machine.")
def server(host: str, port: int, state_dir: Path | None, database_url: str | None,
           isolation: str | None, backend: str) -> None:
    """Run a lasting control plane."""
    from ..server.main import serve_forever

    serve_forever(host, port, state_dir or config.state_dir(), database_url, isolation, backend)


@main.group()
def token() -> None:
    """Tokens: info, set and new from any client; create on the server's machine."""


@token.command("create")
@click.option("--workspace", default="main", show_default=True,
              help="The workspace the token is for.")
@click.option("--admin", is_flag=True,
              help="An operator's token: it may also run containers with weaker isolation "
                   "than the server's (isolation='process'). Give tenants plain tokens.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="The server's state directory (~/.firebox/server).")
@click.option("--database-url", envvar=variables.DATABASE_URL.name, default=None,
              help="The server's database, when it is not SQLite in the state directory.")
def token_create(workspace: str, admin: bool, state_dir: Path | None,
                 database_url: str | None) -> None:
    """Create a token on the server's machine and print it.

    The workspace is made if missing; this talks to the server's database directly."""
    from ..server.core.plane import Settings
    from ..server.core.workspaces import ADMIN, USER
    from ..server.main import bootstrap

    settings = Settings.for_state_dir(state_dir or config.state_dir(), "", database_url)
    click.echo(asyncio.run(bootstrap(settings, workspace=workspace,
                                     kind=ADMIN if admin else USER)))


# ---- app -----------------------------------------------------------------------------------


@main.group("app")
def app_group() -> None:
    """Apps: list, stop, logs, history, rollback."""


@app_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def app_list(as_json: bool) -> None:
    """List the workspace's apps."""
    apps = request("GET", "/v1/apps")["apps"]
    if as_json:
        click.echo(json.dumps(apps, indent=2))
        return
    print_table(
        [fixed("APP ID"), "NAME", fixed("STATE"), fixed("FUNCS", number=True),
         fixed("CONTAINERS", number=True), fixed("CREATED")],
        [(a["app_id"], a["name"] or "-", a["state"], a["functions"], a["containers"],
          when(a["created_at"])) for a in apps],
    )


@app_group.command("stop")
@click.argument("app")
def app_stop(app: str) -> None:
    """Stop APP (a name or an app id): its containers stop and new calls are refused."""
    resp = request("POST", f"/v1/apps/{app}/stop")
    if resp.get("was_stopped"):
        click.echo(f"App {resp['app_id']} was already stopped; nothing to do (`firebox app list` "
                   "shows the apps).")
    else:
        click.echo(f"Stopped {resp['app_id']}.")


@app_group.command("logs")
@click.argument("app")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the app stops.")
def app_logs(app: str, follow: bool) -> None:
    """Print the output of APP's containers."""
    print_logs(f"/v1/apps/{app}/logs", follow)


@app_group.command("history")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON (Modal's keys).")
@click.option("--events", is_flag=True,
              help="Every event of the app (created, deployed, rolled back, stopped, failed) "
                   "instead of its deployed versions.")
def app_history(app: str, as_json: bool, events: bool) -> None:
    """Show APP's deployed versions, newest first (or with --events, all it went through)."""
    if events:
        history = request("GET", f"/v1/apps/{app}/history")
        if as_json:
            click.echo(json.dumps(history, indent=2))
            return
        click.echo(f"{history['name'] or history['app_id']}:")
        print_table([fixed("WHEN"), fixed("EVENT"), "DETAIL"],
                    [(when(e["ts"]), e["kind"],
                      ", ".join(f"{k}={v}" for k, v in e["detail"].items()))
                     for e in history["events"]])
        return
    rows = modal_history(request("GET", f"/v1/apps/{app}/versions")["versions"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"'{app}' has no deployed versions (`firebox app history {app} --events` "
                   "shows what it went through).")
        return
    tagged = "tag" in rows[0]
    print_table([fixed("VERSION"), fixed("TIME DEPLOYED"), fixed("CLIENT"), "DEPLOYED BY",
                 fixed("COMMIT"), *(["TAG"] if tagged else [])],
                [(r["version"], r["time_deployed"], r["client"], r["deployed_by"],
                  (r["commit"] or "-")[:7] + ("*" if (r["commit"] or "").endswith("*") else ""),
                  *([r["tag"] or "-"] if tagged else [])) for r in rows])


def modal_history(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The versions as `modal app history --json` prints them: newest first, "v3" versions, a
    local ISO time, and a tag only when some version has one. A rollback's tag says so."""
    rows = []
    for v in reversed(versions):
        deployed = datetime.datetime.fromtimestamp(v["created_at"]).astimezone()
        tag = v["tag"] or (f"rollback to v{v['rollback_of']}" if v["rollback_of"] else None)
        rows.append({"version": f"v{v['version']}",
                     "time_deployed": deployed.isoformat(sep=" ", timespec="seconds"),
                     "client": v["client_version"], "deployed_by": v["deployed_by"],
                     "commit": v["commit"], "tag": tag})
    if not any(r["tag"] for r in rows):
        for r in rows:
            del r["tag"]
    return rows


@app_group.command("rollback")
@click.argument("app")
@click.argument("version", required=False)
def app_rollback(app: str, version: str | None) -> None:
    """Deploy an earlier VERSION of APP again (v3 or 3; by default the one before the current).

    The rollback is itself a new version in `firebox app history`; calls made after it run the
    functions with the code, image and options they had in that version."""
    body: dict[str, Any] = {}
    if version is not None:
        number = version[1:] if version[:1] in ("v", "V") else version
        if not number.isdigit() or int(number) < 1:
            raise click.BadParameter(f"'{version}' is not a version; write it as v3 or 3 "
                                     f"(`firebox app history {app}` lists them).",
                                     param_hint="VERSION")
        body["version"] = int(number)
    body["client"] = {"version": client_version()}
    resp = request("POST", f"/v1/apps/{app}/rollback", body=body)
    click.echo(f"Rolled back app '{resp['name']}' ({resp['app_id']}) to v{resp['rollback_of']}; "
               f"it is now at v{resp['version']}.")


app_group.add_command(app_stats)
token.add_command(proxy_group)
for _command in token_commands:
    token.add_command(_command)
main.add_command(serve)
main.add_command(usage)
main.add_command(container_group)
main.add_command(shell)

for _group in (dict_group, environment_group, image_group, model_api_group, profile_group,
               queue_group, sandbox_group, secret_group, volume_group, workspace_group):
    main.add_command(_group)
# Every command that talks to a server takes -e/--env, but those that talk to none, manage the
# environments themselves, or concern the whole workspace (its tokens, settings and images).
add_environment_option(main, {"server", "token", "profile", "environment", "workspace", "image"})

if __name__ == "__main__":
    main()
