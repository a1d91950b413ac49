"""`firebox shell`: an interactive shell (or one command) inside a new container of a function,
with its image, code, secrets, volumes, resources and walls, or inside a running container."""

from __future__ import annotations

import time
from typing import Any

import click

from .. import _sync
from ..sdk.app import App
from ..sdk.secret import Secret
from ..sdk.volume import Volume
from ..wire import ids
from .attach import check_pty, exec_in_container, exit_with
from .common import request
from .entrypoints import find_app_and_runnable, import_file

READY_WAIT = 300.0  # seconds a new container (its image built, its code loaded) may take
POLL = 0.2
# bash where the image has it, else sh
SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh"]


@click.command("shell")
@click.argument("ref", required=False)
@click.option("-c", "--cmd", default=None,
              help="Run this command (with sh -c) instead of a shell, and exit with its status.")
@click.option("--pty/--no-pty", "use_pty", default=None,
              help="Run on a terminal connected to yours (the default when stdin is one).")
@click.option("--volume", "volumes", multiple=True, metavar="NAME",
              help="Without REF: mount this volume at /mnt/NAME (repeatable).")
@click.option("--secret", "secrets", multiple=True, metavar="NAME",
              help="Without REF: give the shell this secret's variables (repeatable).")
@click.option("--cpu", type=float, default=None, help="Without REF: cores to reserve.")
@click.option("--memory", type=int, default=None, help="Without REF: MiB of memory to reserve.")
@click.option("--gpu", default=None, help="Without REF: a GPU, as gpu= takes it ('A100', 'T4:2').")
@click.option("--image", default=None, hidden=True,
              help="A registry image to open the shell in (not supported yet: firebox cannot "
                   "pull registry images).")
def shell(ref: str | None, cmd: str | None, use_pty: bool | None, volumes: tuple[str, ...],
          secrets: tuple[str, ...], cpu: float | None, memory: int | None, gpu: str | None,
          image: str | None) -> None:
    """Open a shell in a new container of a function, REF = FILE.py::FUNCTION (its image,
    code, secrets, volumes, cpu, memory and GPUs, as its inputs see them; the container stops
    when the shell exits), or in a running container, REF = CONTAINER_ID. Without REF, in a
    new container of this machine's image with the --volume, --secret, --cpu, --memory and
    --gpu given."""
    if image is not None:
        raise click.UsageError("--image is not supported yet: firebox cannot pull registry "
                               "images. Open the shell in a function that has the image: "
                               "firebox shell FILE.py::FUNCTION.")
    bare = {"--volume": volumes, "--secret": secrets, "--cpu": cpu, "--memory": memory,
            "--gpu": gpu}
    given = [flag for flag, value in bare.items() if value]
    if ref is not None and given:
        raise click.UsageError(f"{given[0]} is for a shell without REF; with REF the "
                               "function's own options apply (change them in its decorator).")
    command = ["sh", "-c", cmd] if cmd is not None else SHELL
    use_pty = check_pty(use_pty)
    if ref is not None and ref.startswith(ids.CONTAINER) and "::" not in ref \
            and not ref.endswith(".py"):
        exit_with(_sync.run(exec_in_container(ref, command, use_pty)))
    app, name = _bare_app(volumes, secrets, cpu, memory, gpu) if ref is None else _find(ref)
    with app.run(show_logs=False):
        app.registered_functions[name].update_autoscaler(min_containers=1)  # with no input
        container_id = _wait_for_container(app.app_id, name)
        code = _sync.run(exec_in_container(container_id, command, use_pty))
    exit_with(code)


def _find(ref: str) -> tuple[App, str]:
    """The app of FILE.py::NAME and the function (or class) NAME names."""
    path, _, name = ref.partition("::")
    app, found = find_app_and_runnable(import_file(path), name or None, path)
    functions = app.registered_functions
    if found is None and len(functions) == 1:
        found = next(iter(functions))
    if found not in functions:
        what = f"No function named '{found}' in the app" if found else "Say which function"
        names = ", ".join(sorted(functions)) or "none"
        raise click.UsageError(f"{what}: the shell opens in a function's container, "
                               f"{path}::NAME; candidates: {names}")
    return app, found


def _bare_app(volumes: tuple[str, ...], secrets: tuple[str, ...], cpu: float | None,
              memory: int | None, gpu: str | None) -> tuple[App, str]:
    """An app of one function that does nothing, for a shell with these options."""
    app = App("firebox-shell")

    def shell() -> None:
        """Nothing: its container is there for the shell exec'd into it."""

    options: dict[str, Any] = {"cpu": cpu, "memory": memory, "gpu": gpu}
    app.function(serialized=True, volumes={f"/mnt/{v}": Volume.from_name(v) for v in volumes},
                 secrets=[Secret.from_name(s) for s in secrets],
                 **{k: v for k, v in options.items() if v is not None})(shell)
    return app, "shell"


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
