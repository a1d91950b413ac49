"""The contract between the scheduler and whatever runs containers: what a launch asks for,
what the machines it launches on hold, and the fate of each container."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
    # own launches on this machine (sandboxes, image builds) hide too.
    hidden: list[Path]
    netpool: netns.Pool | None  # namespaces with egress made ahead, image builds take them too

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

