"""`firebox container ...`: the workspace's running containers: list, logs, exec, stop."""

from __future__ import annotations

import json

import click

from .. import _sync
from .attach import check_pty, exec_in_container, exit_with
from .common import fixed, print_logs, print_table, request, when


@click.group("container")
def container_group() -> None:
    """Containers: list the running ones, print one's output, run a command in one, stop one."""


@container_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def container_list(as_json: bool) -> None:
    """List the workspace's running containers."""
    rows = request("GET", "/v1/containers")["containers"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table(
        [fixed("CONTAINER ID"), "APP", "FUNCTION", fixed("STATE"), fixed("INPUTS", number=True),
         fixed("STARTED")],
        [(r["container_id"], r["app"] or r["app_id"], r["function"], r["state"], r["inputs"],
          when(r["started_at"])) for r in rows],
    )


@container_group.command("logs")
@click.argument("container_id")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new output until the container exits.")
def container_logs(container_id: str, follow: bool) -> None:
    """Print the output of CONTAINER_ID, running or gone."""
    print_logs(f"/v1/containers/{container_id}/logs", follow)


@container_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--pty/--no-pty", "use_pty", default=None,
              help="Run COMMAND on a terminal and connect yours to it (the default when stdin "
                   "is a terminal).")
@click.argument("container_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def container_exec(container_id: str, command: tuple[str, ...], use_pty: bool | None) -> None:
    """Run COMMAND inside running container CONTAINER_ID, as its function sees it (its files,
    volumes, secrets and walls): output streams here, stdin goes to it, and its exit code is
    this command's. Put -- before a COMMAND that has options of its own."""
    exit_with(_sync.run(exec_in_container(container_id, list(command), check_pty(use_pty))))


@container_group.command("stop")
@click.argument("container_id")
def container_stop(container_id: str) -> None:
    """Stop CONTAINER_ID; what it is running gets its grace, then runs in another container."""
    request("POST", f"/v1/containers/{container_id}/stop")
    click.echo(f"Stopping {container_id}.")
