"""`firebox profile list / activate / current`: the servers this machine's config.toml knows,
one profile each, and which one commands use."""

from __future__ import annotations

import json

import click

from .. import config
from ..wire import settings
from .common import fixed, print_table


@click.group("profile")
def profile_group() -> None:
    """Profiles: a server and its token each, saved by `firebox token set`."""


@profile_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def profile_list(as_json: bool) -> None:
    """List the profiles, marking the one in use."""
    known = config.profiles()
    active = config.active_name(known)
    rows = [{"name": name, "active": name == active, "server_url": values.get("server_url"),
             "environment": values.get("environment") or "main"}
            for name, values in known.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"No profiles in {config.config_file()}; save one with `firebox token set "
                   "--server URL --token TOKEN`.")
        return
    print_table([fixed(""), "PROFILE", "SERVER", "ENVIRONMENT"],
                [("•" if row["active"] else "", row["name"], row["server_url"] or "-",
                  row["environment"]) for row in rows])
    if settings.PROFILE.get():
        click.echo(f"({settings.PROFILE.name} chooses '{active}' in this shell.)")


@profile_group.command("activate")
@click.argument("name")
def profile_activate(name: str) -> None:
    """Make profile NAME the one commands use."""
    config.activate(name)
    click.echo(f"Profile '{name}' is active: commands go to "
               f"{config.profiles()[name].get('server_url', '-')}.")
    if settings.PROFILE.get() and settings.PROFILE.get() != name:
        click.echo(f"Note: {settings.PROFILE.name}={settings.PROFILE.get()} set in this shell "
                   "overrides it; unset it to use the active profile.", err=True)


@profile_group.command("current")
def profile_current() -> None:
    """Print the name of the profile in use."""
    name = config.active_name(config.profiles())
    if name is None:
        raise click.ClickException("No profile yet; save one with `firebox token set --server "
                                   "URL --token TOKEN`.")
    click.echo(name)
