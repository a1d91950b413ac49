"""A Backend that launches nothing: each container is a record the test drives, and through it
the container's side of its channel (ready, outputs, exit with a code, or hang by doing none)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firebox import wire
from firebox.backends.base import CapacityReport, Launch, NodeCapacity, describe_exit
from firebox.backends.gpus import Gpu
from firebox.server.core.scheduler import Scheduler
from firebox.wire import messages

MIB = 1024 * 1024


@dataclass
class FakeContainer:
    """What the scheduler sent a launched container, and whether it has exited."""

    launch: Launch
    sent: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    def send(self, message: dict[str, Any]) -> None:  # the container's channel (a Channel)
        self.sent.append(message)

    def inputs(self) -> list[messages.InputItem]:
        return [i for m in self.sent if m[messages.TAG] == messages.INPUTS for i in m["items"]]

    def got(self, tag: str) -> bool:
        return any(m[messages.TAG] == tag for m in self.sent)


class FakeBackend:
    isolation = "process"
    netpool = None

    def __init__(self, cores: float = 4.0, memory_mb: int = 4096, gpus: tuple[Gpu, ...] = ()
                 ) -> None:
        self.hidden: list[Path] = []
        self.node = NodeCapacity("fake", cores, memory_mb * MIB, gpus)
        self.containers: dict[str, FakeContainer] = {}  # every one launched, in order
        self.fail_start: Exception | None = None  # the next start raises it
        self.scheduler: Scheduler | None = None  # whose containers these are, once built

    # ---- the Backend protocol ----------------------------------------------------------------

    def capacity(self) -> CapacityReport:
        return CapacityReport((self.node,))

    def start_standby(self) -> None:
        pass

    async def start(self, launch: Launch) -> None:
        if self.fail_start is not None:
            exc, self.fail_start = self.fail_start, None
            raise exc
        self.containers[launch.container_id] = FakeContainer(launch)

    def takes_standby(self, launch: Launch) -> bool:
        return True  # nothing to wait for: launches skip the gate

    async def connect(self, container_id: str, port: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise ConnectionRefusedError(f"{container_id} has no ports")

    async def kill(self, container_id: str) -> None:
        self.exit(container_id, -9)

    async def close(self) -> None:
        for cid in list(self.containers):
            self.exit(cid, -9)

    # ---- the containers' side, driven by the test --------------------------------------------

    def live(self) -> list[str]:
        return [cid for cid, c in self.containers.items() if c.exit_code is None]

    def ready(self, container_id: str) -> None:
        """The container dialled in and its enter hooks ran."""
        assert self.scheduler is not None
        c = self.scheduler.containers[container_id]
        self.scheduler.attach(c, self.containers[container_id])
        self.scheduler.on_ready(c)

    def output(self, container_id: str, input_id: str, status: str = wire.SUCCESS,
               data: bytes | None = b"") -> None:
        assert self.scheduler is not None
        c = self.scheduler.containers[container_id]
        self.scheduler.on_outputs(c, [{"id": input_id, "status": status, "data": data,
                                       "exec": 0.001}])

    def exit(self, container_id: str, code: int) -> None:
        """The container's process ended with this code (its exit is reported once)."""
        fake = self.containers.get(container_id)
        if fake is None or fake.exit_code is not None:
            return
        fake.exit_code = code
        assert self.scheduler is not None
        self.scheduler.on_container_exit(container_id, code, describe_exit(code), time.time())
