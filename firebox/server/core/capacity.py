"""What the backend's nodes hold (cores, memory, GPUs) and what containers have reserved of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...backends import gpus
from ...backends.base import CapacityReport, NodeCapacity

MIB = 1024 * 1024


@dataclass(frozen=True)
class Reservation:
    node: str  # the name of the node it holds its share of
    gpus: tuple[int, ...] = ()  # indices of the GPUs it holds, on that node


@dataclass
class _Node:
    name: str
    cpu: float
    memory_mb: int
    gpus: list[gpus.Gpu]
    used_cpu: float = 0.0
    used_memory: int = 0
    used_gpus: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, report: NodeCapacity) -> _Node:
        return cls(report.name, report.cores, report.memory_bytes // MIB, list(report.gpus))


class Capacity:
    """The nodes a backend reported; containers reserve their requests from one of them."""

    def __init__(self, report: CapacityReport) -> None:
        self.nodes = [_Node.of(n) for n in report.nodes]
        # A request too big for every node is refused in the words of the machine it is on.
        self._machine = "this machine" if len(self.nodes) == 1 else "any node"

    @property
    def cpu(self) -> float:
        return sum(n.cpu for n in self.nodes)

    @property
    def memory_mb(self) -> int:
        return sum(n.memory_mb for n in self.nodes)

    @property
    def used_cpu(self) -> float:
        return sum(n.used_cpu for n in self.nodes)

    @property
    def used_memory(self) -> int:
        return sum(n.used_memory for n in self.nodes)

    @property
    def gpus(self) -> list[gpus.Gpu]:
        return [g for n in self.nodes for g in n.gpus]

    def never_fits(self, cpu: float, memory_mb: int, gpu: Any = None) -> str | None:
        """Why a request could not be placed even on an empty node, or None."""
        most_cpu = max((n.cpu for n in self.nodes), default=0.0)
        if cpu > most_cpu:
            return f"cpu={cpu} is more than {self._machine}'s {most_cpu:g} cores"
        most_memory = max((n.memory_mb for n in self.nodes), default=0)
        if memory_mb > most_memory:
            return f"memory={memory_mb} MiB is more than {self._machine}'s {most_memory} MiB"
        try:
            gpus.options(gpu)
        except (KeyError, TypeError, ValueError):
            return f"gpu={gpu!r} is not a list of {{type, count}} choices"
        return None

    def lacks_gpu(self, gpu: Any) -> str | None:
        """Why no node could ever give a (well-formed) GPU request, or None. Unlike cores and
        memory, this is not refused: calls wait, as they would for a node with that GPU to
        join a cluster."""
        if gpu and not any(gpus.pick(n.gpus, gpu) is not None for n in self.nodes):
            return f"gpu={gpus.describe(gpu)} is more than {self._machine} has " \
                f"({gpus.summary(self.gpus)})"
        return None

    def reserve(self, cpu: float, memory_mb: int, gpu: Any = None) -> Reservation | None:
        """Take the request from the first node with room for all of it, or None."""
        for node in self.nodes:
            if (node.used_cpu + cpu > node.cpu + 1e-9
                    or node.used_memory + memory_mb > node.memory_mb):
                continue
            indices: tuple[int, ...] = ()
            if gpu:
                picked = gpus.pick([g for g in node.gpus if g.index not in node.used_gpus], gpu)
                if picked is None:
                    continue
                indices = picked
            node.used_cpu += cpu
            node.used_memory += memory_mb
            node.used_gpus.update(indices)
            return Reservation(node.name, indices)
        return None

    def release(self, cpu: float, memory_mb: int, reservation: Reservation) -> None:
        node = next(n for n in self.nodes if n.name == reservation.node)
        node.used_cpu = max(0.0, node.used_cpu - cpu)
        node.used_memory = max(0, node.used_memory - memory_mb)
        node.used_gpus.difference_update(reservation.gpus)

    def gpu_label(self, reservation: Reservation) -> str | None:
        """'H100:2' for the metering of a container holding these GPUs."""
        if not reservation.gpus:
            return None
        node = next(n for n in self.nodes if n.name == reservation.node)
        kind = next(g.type for g in node.gpus if g.index == reservation.gpus[0])
        n = len(reservation.gpus)
        return f"{kind}:{n}" if n > 1 else kind
