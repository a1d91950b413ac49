"""The contract between the scheduler and whatever runs containers: what a launch asks for,
what the machines it launches on hold, and the fate of each container; and the same for
sandboxes, which the backend boots and the control plane drives command by command."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import netns
from .gpus import Gpu

# container id, "stdout" | "stderr", text; what it returns, when not None, is awaited before
# the container's output is read again (the logs are behind: the printer waits)
OnOutput = Callable[[str, str, str], Awaitable[None] | None]
# container id, return code, cause in words, and when it ended (before any clean-up)
OnExit = Callable[[str, int | None, str, float], None]


@dataclass(frozen=True)
class NodeCapacity:
    """One machine containers may be placed on, and what the scheduler may reserve on it."""

    name: str
    cores: float
    memory_bytes: int
    gpus: tuple[Gpu, ...] = ()  # each with its index on this node and its kind


@dataclass(frozen=True)
class CapacityReport:
    """Every node a backend launches containers on."""

    nodes: tuple[NodeCapacity, ...]


@dataclass(frozen=True)
class Launch:
    container_id: str
    env: dict[str, str]
    cpu: float
    memory_mb: int
    label: str
    cpu_limit: float | None = None  # cores at most; None: it may use idle cores
    memory_limit_mb: int | None = None  # killed above this; None: only the request (soft)
    isolation: str | None = None  # process | namespaces | gvisor; None: the backend's default
    gpus: tuple[int, ...] = ()  # indices of the GPUs reserved for it, on its node
    block_network: bool = False  # no network but its channel to the control plane
    node: str = ""  # the name of the node (of capacity()) its cores, memory and GPUs are on


class Backend(Protocol):
    isolation: str  # how containers that don't choose are isolated: the operator's floor
    # Host paths nothing launched may see (state, client config), which the control plane's
    # image builds on this machine hide too.
    hidden: list[Path]
    netpool: netns.Pool | None  # namespaces with egress made ahead, image builds take them too
    sandboxes: SandboxLauncher  # how it runs sandboxes (below)

    def capacity(self) -> CapacityReport:
        """The nodes containers may be placed on and what each holds, read once at start."""

    def start_standby(self) -> None:
        """Begin what makes later starts fast (called once the server listens)."""

    async def start(self, launch: Launch) -> None:
        """Start the container; return once its process exists."""

    def takes_standby(self, launch: Launch) -> bool:
        """Whether start(launch) would now hand it to a runtime launched ahead (no cold start)."""

    async def connect(self, container_id: str, port: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to a port of the container, as a client inside it would make."""

    async def kill(self, container_id: str) -> None:
        """Kill the container at once; its exit is still reported through on_exit."""

    async def close(self) -> None: ...


def describe_exit(returncode: int) -> str:
    """'exited with code 3' or 'was killed by signal SIGKILL'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with code {returncode}"


# ---- sandboxes: long-lived containers for untrusted code, driven one command at a time -------

SANDBOX_MEMORY_MB = 1024  # a sandbox's hard memory limit when it asks for none


class SandboxFailed(RuntimeError):
    """A sandbox cannot start here, or did not; the message says why, for its user."""


class SandboxGone(RuntimeError):
    """The sandbox's processes have ended: nothing more can be asked of it."""


class SandboxFileError(RuntimeError):
    """A file operation failed inside the sandbox: kind is the OSError's name there."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SandboxLaunch:
    sandbox_id: str
    isolation: str  # namespaces | gvisor: what SandboxLauncher.isolation() said
    env: dict[str, str] = field(default_factory=dict)  # what its commands inherit
    cpu: float | None = None  # cores at most; None: a share of a core reserved, no limit
    memory_mb: int = SANDBOX_MEMORY_MB  # killed above this
    layers: tuple[str, ...] = ()  # snapshot layer ids, newest first
    image_layers: tuple[Path, ...] = ()  # a built image's layer directories, newest first
    image_root: bool = False  # those are a registry image's: its whole root (image_root.py)
    volumes: dict[str, Path] = field(default_factory=dict)  # mount path -> its working copy
    network: tuple[str, ...] | None = None  # allowlisted IPv4 CIDRs; None: no network at all


class SandboxEvents(Protocol):
    """What a sandbox's processes report as it happens, to whoever started or took it."""

    def exec_output(self, exec_id: str, fd: int, data: bytes) -> None:
        """Output of a command: fd 1 is stdout, 2 stderr (and a terminal's output)."""

    def exec_exited(self, exec_id: str, code: int) -> None:
        """A command ended and all its output was reported; a signal is its negative number."""

    def sandbox_ended(self, oom_killed: bool) -> None:
        """The sandbox's processes ended by themselves (not by kill()); remove() is still owed."""


class SandboxProcess(Protocol):
    """A booted sandbox: what runs it and the channel to its commands."""

    id: str
    isolation: str
    events: SandboxEvents | None  # None while it waits in the backend's warm pool

    @property
    def address(self) -> str | None:
        """Its address on its own network, where tunnels reach its ports; None: no network."""

    def exec(self, exec_id: str, args: list[str], env: dict[str, str], cwd: str | None,
             pty: bool, size: list[int] | None) -> None:
        """Start a command (on a terminal of size (rows, columns) with pty); SandboxGone if it
        has ended."""

    def stdin(self, exec_id: str, data: bytes, eof: bool) -> None:
        """Pass input to a command, in order; SandboxGone if the sandbox has ended."""

    def signal(self, exec_id: str, sig: int) -> None:
        """Signal a command's process group; SandboxGone if the sandbox has ended."""

    def resize(self, exec_id: str, size: list[int]) -> None:
        """Give a command's terminal a new size (rows, columns); SandboxGone if the sandbox
        has ended."""

    def file_op(self, op: str, path: str, data: bytes, options: dict[str, Any]
                ) -> Awaitable[tuple[Any, bytes]]:
        """Ask for a file operation now (SandboxGone if it has ended); the awaitable gives its
        result and data, or raises SandboxFileError, or SandboxGone if the sandbox ends first."""

    async def snapshot(self, layer_id: str) -> None:
        """Copy what the sandbox wrote to its root into a new layer of that id."""

    async def kill(self) -> None:
        """Kill every process of the sandbox at once."""

    async def remove(self) -> None:
        """Kill it if need be and remove all it left: its cgroup, network and files."""


class SandboxLauncher(Protocol):
    """How a backend runs sandboxes (Backend.sandboxes)."""

    def isolation(self) -> str:
        """How sandboxes are isolated here now; SandboxFailed if they cannot be."""

    def networks(self) -> bool:
        """Whether sandboxes can have a network of their own here (cidr_allowlist=, tunnels)."""

    def start(self) -> None:
        """Clear what a previous run left and begin booting warm sandboxes."""

    async def start_sandbox(self, launch: SandboxLaunch, events: SandboxEvents
                            ) -> SandboxProcess:
        """Boot a sandbox; return once it takes commands. SandboxFailed if it did not start."""

    def take_warm(self) -> SandboxProcess | None:
        """A sandbox booted ahead, if one is ready: SandboxLaunch's defaults under isolation(),
        no image, volumes or network. Its id is its own; set its events at once."""

    async def close(self) -> None:
        """Remove every sandbox still here."""
