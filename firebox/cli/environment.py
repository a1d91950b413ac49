"""`firebox environment create / list / update / delete`: named namespaces of apps and objects
within a workspace; and the `-e/--env` option every command that talks to a server takes."""

from __future__ import annotations

import json

import click

from .. import config
from .common import fixed, print_table, request, when


@click.group("environment")
def environment_group() -> None:
    """Environments: namespaces of apps, Dicts, Queues, Volumes and Secrets in a workspace."""


@environment_group.command("create")
@click.argument("name")
def environment_create(name: str) -> None:
    """Create environment NAME; use it with `-e NAME` or environment_name="NAME"."""
    request("POST", "/v1/environments", body={"name": name})
    click.echo(f"Created environment '{name}'; deploy to it with `firebox deploy -e {name} ...`.")


@environment_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def environment_list(as_json: bool) -> None:
    """List the workspace's environments."""
    found = request("GET", "/v1/environments")["environments"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    print_table(["NAME", fixed("APPS", number=True), fixed("OBJECTS", number=True),
                 fixed("CREATED")],
                [(env["name"], env["apps"], env["objects"], when(env["created_at"]))
                 for env in found])


@environment_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True,
              help="Delete it even though it holds apps or objects: its apps are stopped and "
                   "its objects deleted.")
def environment_delete(name: str, yes: bool) -> None:
    """Delete environment NAME (never "main")."""
    resp = request("DELETE", f"/v1/environments/{name}", params={"force": "1" if yes else "0"})
    held = (f", stopping {resp['apps']} app(s) and deleting {resp['objects']} object(s)"
            if resp["apps"] or resp["objects"] else "")
    click.echo(f"Deleted environment '{name}'{held}.")


@environment_group.command("update")
@click.argument("name")
@click.option("--set-name", "new_name", required=True, help="The environment's new name.")
def environment_update(name: str, new_name: str) -> None:
    """Rename environment NAME; its apps keep running, their web URLs follow the new name."""
    request("PATCH", f"/v1/environments/{name}", body={"name": new_name})
    click.echo(f"Renamed environment '{name}' to '{new_name}'; use it with `-e {new_name}`.")


def _choose(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        config.choose_environment(value)


def add_environment_option(command: click.Command, skip: set[str], path: str = "") -> None:
    """Give every command under command `-e/--env`, but those named in skip (by their path,
    "token create"), which talk to no server or to no environment."""
    if path in skip:
        return
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            add_environment_option(sub, skip, f"{path} {name}".strip())
        return
    command.params.append(click.Option(
        ["-e", "--env"], expose_value=False, callback=_choose, metavar="NAME",
        help="The environment to use (else FIREBOX_ENVIRONMENT, the profile's, or main)."))
