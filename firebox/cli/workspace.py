"""`firebox workspace`: the workspace's own settings."""

from __future__ import annotations

import click

from .common import request


@click.group("workspace")
def workspace_group() -> None:
    """The workspace's settings: show, set."""


def _show(info: dict[str, str | None]) -> None:
    mine = info["isolation"]
    click.echo(f"workspace {info['name']} ({info['workspace_id']})")
    click.echo(f"  isolation: {mine or 'the server default'}"
               + ("" if mine else f" ({info['server_isolation']})"))


@workspace_group.command("show")
def show() -> None:
    """Show the workspace's settings."""
    _show(request("GET", "/v1/workspace"))


@workspace_group.command("set")
@click.option("--isolation", type=click.Choice(["namespaces", "gvisor", "process", "default"]),
              required=True, help="How containers of functions that don't choose are isolated; "
                                  "'default' follows the server.")
def set_(isolation: str) -> None:
    """Change the workspace's settings."""
    value = None if isolation == "default" else isolation
    _show(request("PATCH", "/v1/workspace", body={"isolation": value}))
