"""`firebox sandbox ...`: list, exec, terminate."""

from __future__ import annotations

import json
import sys

import click


@click.group("sandbox")
def sandbox_group() -> None:
    """Sandboxes: list, exec, terminate."""


@sandbox_group.command("list")
@click.option("--app-id", default=None, help="Only the sandboxes of this app.")
@click.option("--json", "as_json", is_flag=True)
def sandbox_list(app_id: str | None, as_json: bool) -> None:
    """List the running sandboxes."""
    from ..sdk.sandbox import Sandbox

    rows = [{"id": sb.object_id, "isolation": sb.isolation} for sb in Sandbox.list(app_id=app_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<22} ISOLATION")
    for r in rows:
        click.echo(f"{r['id']:<22} {r['isolation']}")


@sandbox_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("sandbox_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def sandbox_exec(sandbox_id: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in sandbox SANDBOX_ID; its output is printed and its exit code returned."""
    from ..sdk.sandbox import Sandbox

    process = Sandbox.from_id(sandbox_id).exec(*command, text=False)
    if not sys.stdin.isatty():
        process.stdin.write(sys.stdin.buffer.read())
    process.stdin.write_eof()
    process.stdin.drain()
    sys.stdout.buffer.write(process.stdout.read())
    sys.stderr.buffer.write(process.stderr.read())
    sys.exit(process.wait() & 0xFF)


@sandbox_group.command("terminate")
@click.argument("sandbox_id")
def sandbox_terminate(sandbox_id: str) -> None:
    """Stop sandbox SANDBOX_ID and everything in it."""
    from ..sdk.sandbox import Sandbox

    Sandbox.from_id(sandbox_id).terminate()
    click.echo(f"Terminated {sandbox_id}.")
