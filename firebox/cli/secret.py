"""`firebox secret ...`: create, list, delete. Values go in; they are never printed."""

from __future__ import annotations

import json

import click

from ..exception import InvalidError
from .common import request, when


@click.group("secret")
def secret_group() -> None:
    """Secrets: create, list, delete."""


@secret_group.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Replace a secret of that name.")
def secret_create(name: str, pairs: tuple[str, ...], force: bool) -> None:
    """Store secret NAME with KEY=VALUE pairs (use KEY=- to read the value from stdin)."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidError(f"'{pair.split('=')[0]}' is not KEY=VALUE.")
        env[key] = click.get_text_stream("stdin").read().rstrip("\n") if value == "-" else value
    resp = request("POST", "/v1/secrets", body={"name": name, "env": env, "overwrite": force})
    click.echo(f"Created secret '{name}' with keys: {', '.join(resp['keys'])}.")


@secret_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def secret_list(as_json: bool) -> None:
    """List the workspace's secrets and their key names."""
    rows = request("GET", "/v1/secrets")["secrets"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<32} {'UPDATED':<20} KEYS")
    for r in rows:
        click.echo(f"{r['name']:<32} {when(r['updated_at']):<20} {', '.join(r['keys'])}")


@secret_group.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Delete secret NAME; functions that use it no longer get its variables."""
    request("DELETE", f"/v1/secrets/{name}")
    click.echo(f"Deleted secret '{name}'.")
