"""Commands exec'd into a running function container (`firebox container exec`, `firebox
shell`): the container's runtime runs them inside its own walls; their output is kept here for
the client to stream, as a sandbox command's is. Only the container's own workspace, with a user
token, may exec into it."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

from ...wire import ids, messages
from .container_records import own
from .errors import ApiError, invalid, not_found
from .sandboxes import Exec
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane
    from .pools import Container

KEEP_ENDED = 300.0  # seconds an ended command's output stays readable
KILLED = -signal.SIGKILL  # the code of a command whose container went away


def start(cp: ControlPlane, who: Identity, container_id: str, args: list[str],
          workdir: str | None, pty: bool, size: list[int] | None) -> Exec:
    """Start args in the container (on a terminal of size (rows, columns) with pty)."""
    if who.kind == "container":
        raise invalid("Only a user token can exec into containers.")
    c = own(cp, who, container_id)
    if not args or not all(isinstance(a, str) and a for a in args):
        raise invalid("exec needs a command: one or more strings.")
    if c.state != "ready" or c.channel is None:
        doing = "still starting" if c.state == "starting" else "stopping"
        raise ApiError(409, "InvalidError",
                       f"Container {container_id} is {doing}; `firebox container list` shows "
                       "the running ones.")
    e = Exec(ids.new_container_exec_id())
    c.execs[e.id] = e
    used(c)
    c.channel.send(messages.exec_start(e.id, args, workdir, pty, size))
    return e


def command(cp: ControlPlane, who: Identity, container_id: str, exec_id: str) -> Exec:
    """A command exec'd into one of the workspace's containers, running or ended a while ago."""
    e = own(cp, who, container_id).execs.get(exec_id)
    if e is None:
        raise not_found(f"No command {exec_id} in container {container_id}.")
    return e


def stdin(cp: ControlPlane, who: Identity, container_id: str, exec_id: str, data: bytes,
          eof: bool) -> None:
    c = own(cp, who, container_id)
    e = command(cp, who, container_id, exec_id)
    if e.code is None and c.channel is not None:
        used(c)
        c.channel.send(messages.exec_stdin(exec_id, data, eof))


def resize(cp: ControlPlane, who: Identity, container_id: str, exec_id: str,
           size: list[int]) -> None:
    """The command's terminal has a new (rows, columns)."""
    c = own(cp, who, container_id)
    e = command(cp, who, container_id, exec_id)
    if e.code is None and c.channel is not None:
        c.channel.send(messages.exec_resize(exec_id, size))


def used(c: Container) -> None:
    """A command's input or output counts as use: the container's scaledown window starts
    again, so an idle container is not stopped under a shell that is being used."""
    c.idle_since = time.monotonic()


def on_output(c: Container, message: dict[str, Any]) -> None:
    e = c.execs.get(str(message["id"]))
    if e is not None and e.code is None:
        used(c)
        e.add(2 if message["fd"] == 2 else 1, bytes(message["data"]))


def on_exit(c: Container, message: dict[str, Any]) -> None:
    e = c.execs.get(str(message["id"]))
    if e is not None and e.code is None:
        e.finish(int(message["code"]))
        asyncio.get_running_loop().call_later(KEEP_ENDED, c.execs.pop, e.id, None)


def container_gone(c: Container) -> None:
    """Its channel closed: what still ran in it ended with it."""
    for e in c.execs.values():
        e.finish(KILLED)
