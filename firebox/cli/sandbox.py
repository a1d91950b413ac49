"""`firebox sandbox ...`: list, exec, terminate."""

from __future__ import annotations

import json

import click

from .. import _sync
from ..sdk.sandbox import Sandbox
from .attach import attach, check_pty, exit_with, window
from .common import fixed, print_table


@click.group("sandbox")
def sandbox_group() -> None:
    """Sandboxes: list, exec, terminate."""


@sandbox_group.command("list")
@click.option("--app-id", default=None, help="Only the sandboxes of this app.")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def sandbox_list(app_id: str | None, as_json: bool) -> None:
    """List the running sandboxes."""
    rows = [{"id": sb.object_id, "isolation": sb.isolation} for sb in Sandbox.list(app_id=app_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table([fixed("ID"), "ISOLATION"], [(r["id"], r["isolation"]) for r in rows])


@sandbox_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-t", "--pty", "use_pty", is_flag=True,
              help="Run COMMAND on a terminal and connect yours to it (for shells and other "
                   "interactive programs).")
@click.argument("sandbox_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def sandbox_exec(sandbox_id: str, command: tuple[str, ...], use_pty: bool) -> None:
    """Run COMMAND in sandbox SANDBOX_ID: its output streams here as it comes, this command's
    stdin goes to it, and its exit code is returned."""
    exit_with(_sync.run(_exec(sandbox_id, command, use_pty and check_pty(True))))


async def _exec(sandbox_id: str, command: tuple[str, ...], use_pty: bool) -> int:
    sb = await Sandbox.from_id.aio(sandbox_id)
    process = await sb.exec.aio(*command, text=False, pty=use_pty,
                                _pty_size=window() if use_pty else None)
    return await attach(process, use_pty)


@sandbox_group.command("terminate")
@click.argument("sandbox_id")
def sandbox_terminate(sandbox_id: str) -> None:
    """Stop sandbox SANDBOX_ID and everything in it."""
    Sandbox.from_id(sandbox_id).terminate()
    click.echo(f"Terminated {sandbox_id}.")
