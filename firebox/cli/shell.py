"""`firebox shell`: an interactive shell (or one command) inside a new container of a function,
with its image, code, secrets, volumes, resources and walls, or inside a running container."""

from __future__ import annotations

import time

import click

from .. import _sync
from ..wire import ids
from .attach import check_pty, exec_in_container, exit_with
from .common import request
from .entrypoints import find_app_and_runnable, import_file

READY_WAIT = 300.0  # seconds a new container (its image built, its code loaded) may take
POLL = 0.2
# bash where the image has it, else sh
SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh"]


@click.command("shell")
@click.argument("ref")
@click.option("-c", "--cmd", default=None,
              help="Run this command (with sh -c) instead of a shell, and exit with its status.")
@click.option("--pty/--no-pty", "use_pty", default=None,
              help="Run on a terminal connected to yours (the default when stdin is one).")
def shell(ref: str, cmd: str | None, use_pty: bool | None) -> None:
    """Open a shell in a new container of a function, REF = FILE.py::FUNCTION (its image,
    code, secrets, volumes, cpu, memory and GPUs, as its inputs see them; the container stops
    when the shell exits), or in a running container, REF = CONTAINER_ID."""
    command = ["sh", "-c", cmd] if cmd is not None else SHELL
    use_pty = check_pty(use_pty)
    if ref.startswith(ids.CONTAINER) and "::" not in ref and not ref.endswith(".py"):
        exit_with(_sync.run(exec_in_container(ref, command, use_pty)))
    path, _, name = ref.partition("::")
    module = import_file(path)
    app, name = find_app_and_runnable(module, name or None, path)
    functions = app.registered_functions
    if name is None and len(functions) == 1:
        name = next(iter(functions))
    if name not in functions:
        raise click.UsageError(f"Say which function to open a shell in with {path}::NAME; "
                               f"candidates: {', '.join(sorted(functions)) or 'none'}")
    with app.run(show_logs=False):
        functions[name].update_autoscaler(min_containers=1)  # one container, with no input
        container_id = _wait_for_container(app.app_id, name)
        code = _sync.run(exec_in_container(container_id, command, use_pty))
    exit_with(code)


def _wait_for_container(app_id: str, function: str) -> str:
    """The id of FUNCTION's container once it is ready; one that exits first failed to start."""
    deadline = time.monotonic() + READY_WAIT
    seen: set[str] = set()
    while time.monotonic() < deadline:
        mine = {str(c["container_id"]): c["state"]
                for c in request("GET", "/v1/containers")["containers"]
                if c["app_id"] == app_id and c["function"] == function}
        for container_id, state in mine.items():
            if state == "ready":
                return container_id
        gone = seen - set(mine)
        if gone:
            raise click.ClickException(
                f"The container of {function} exited before it was ready; `firebox container "
                f"logs {min(gone)}` shows what it printed.")
        seen |= set(mine)
        time.sleep(POLL)
    raise click.ClickException(
        f"No container of {function} was ready after {READY_WAIT:.0f}s; `firebox app logs "
        f"{app_id}` shows what it printed.")
