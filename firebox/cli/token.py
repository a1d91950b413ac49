"""`firebox token info / set / new`: a client machine's token, seen, saved and made through the
API (`firebox token create`, on the server's machine, makes the first one)."""

from __future__ import annotations

import json

import click

from .. import _sync, config
from .. import client as client_mod
from ..exception import AuthError, NotFoundError
from ..wire import settings
from .common import request


def _where_token_comes_from() -> str:
    return settings.TOKEN.name if settings.TOKEN.get() else str(config.config_file())


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def token_info(as_json: bool) -> None:
    """Show this machine's server, workspace, environment and kind of token."""
    info = request("GET", "/v1/token")
    c = client_mod.current()
    info = {"server_url": c.server_url, **info, "environment": c.environment or "main",
            "token_from": _where_token_comes_from(), "profile": config.active_profile()[0]}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"server:    {info['server_url']} (firebox {info['server_version']})")
    click.echo(f"workspace: {info['workspace']} ({info['workspace_id']}), environment "
               f"{info['environment']}")
    click.echo(f"token:     a {info['kind']} token, from {info['token_from']}")
    if info["profile"]:
        click.echo(f"profile:   {info['profile']}")
    ca = config.ca_file(info["profile"]) if info["profile"] else None
    if ca is not None and ca.exists():
        click.echo(f"tls:       its tunnels' certificate is in {ca}")


async def _check(server_url: str, token: str) -> tuple[dict[str, str], str | None]:
    """The token's workspace and kind, and the certificate the server's tunnels are served
    under (None from a server too old to say)."""
    c = client_mod.Client(server_url, token)
    try:
        info = await c.request("GET", "/v1/token")
        try:
            ca = (await c.request("GET", "/v1/tls/ca"))["pem"]
        except NotFoundError:
            ca = None
        return info, ca
    finally:
        await c.close()


@click.command("set")
@click.option("--server", "server_url", required=True, help="The server's URL, like "
              f"http://host:{config.DEFAULT_PORT}.")
@click.option("--token", required=True, help="A token of the server's, from `firebox token "
                                             "new` or `firebox token create`.")
@click.option("--profile", default=None, help="The profile to save it in (default: the token's "
                                              "workspace's name, or 'default' with --no-verify).")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="Make that profile the one commands use.")
@click.option("--no-verify", is_flag=True, help="Save it without asking the server first.")
def token_set(server_url: str, token: str, profile: str | None, activate: bool,
              no_verify: bool) -> None:
    """Save a server and its token as a profile of this machine's client config."""
    server_url = server_url.rstrip("/")
    workspace = ca = None
    if not no_verify:
        try:
            info, ca = _sync.run(_check(server_url, token))
        except AuthError:
            raise AuthError(f"The server at {server_url} refused this token; check it, or make "
                            "one with `firebox token new` on a machine that has one.") from None
        click.echo(f"The token is a {info['kind']} token of workspace '{info['workspace']}'.")
        workspace = info["workspace"]
    profile = profile or workspace or config.DEFAULT_PROFILE
    path = config.write_profile(profile, server_url, token, activate)
    click.echo(f"Saved the server {server_url} and its token as profile '{profile}' in {path}"
               + (", and activated it." if activate else
                  f"; `firebox profile activate {profile}` uses it."))
    if ca:
        saved = config.save_ca(profile, ca.encode())
        click.echo(f"Saved the certificate its tunnels are served under in {saved}; trust it "
                   f"with SSL_CERT_FILE={saved} (or verify=, curl --cacert).")
    overriding = [s.name for s in (settings.SERVER_URL, settings.TOKEN, settings.PROFILE)
                  if s.get()]
    if overriding:
        many = len(overriding) > 1
        click.echo(f"Note: {' and '.join(overriding)} set in this shell "
                   f"{'override' if many else 'overrides'} the file; unset "
                   f"{'them' if many else 'it'} to use it.", err=True)


@click.command("new")
def token_new() -> None:
    """Make a new user token for this token's workspace and print it."""
    made = request("POST", "/v1/tokens")
    click.echo(made["token"])
    click.echo(f"A user token of workspace {made['workspace_id']}; on another machine run "
               f"`firebox token set --server {client_mod.current().server_url} --token "
               "<the token>`.", err=True)


token_commands = [token_info, token_set, token_new]
