"""Launching a container through the backend: what a launch asks for, the isolation floor it
must meet, and the gate that keeps a burst of cold launches from starving each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ...backends.base import Backend, Launch
from .functions import FunctionRecord
from .isolation_floor import floor, refusal
from .pools import Container

LAUNCH_GATE_TIMEOUT = 10.0  # seconds a launch may hold its turn before the next one starts


class LaunchGate:
    """Launches that have not dialled in yet, at most `slots` at once (one per core): a cold
    launch is a few hundred ms of CPU importing Python and the runtime, and a burst that starts
    them all at once has every one of them ready only at the end. A few at a time, the first
    are serving inputs while the rest start."""

    def __init__(self, backend: Backend, slots: int) -> None:
        self.backend = backend
        self._slots = asyncio.Semaphore(max(1, slots))

    async def run(self, c: Container, launch: Launch, start: Callable[[], Awaitable[None]]
                  ) -> None:
        """Run start() in the container's turn; its turn ends once it dialled in."""
        if self.backend.takes_standby(launch):  # dials in within milliseconds: no turn needed
            await start()
            return
        async with self._slots:
            await start()
            with contextlib.suppress(TimeoutError):  # a hung launch must not hold the others
                await asyncio.wait_for(c.connected.wait(), LAUNCH_GATE_TIMEOUT)


def isolation_problem(fn: FunctionRecord, backend_isolation: str,
                      workspace_default: str | None) -> str | None:
    """Why a function's isolation is below the operator's floor (which may have been raised
    since it was registered), unless an operator chose it; None when it may launch."""
    if fn.get("isolation_by_operator"):
        return None
    problem = refusal(fn.get("isolation"), floor(backend_isolation, workspace_default),
                      f"Function '{fn.name}'")
    return None if problem is None else problem + "; deploy it again without isolation="


def launch_for(c: Container, env: dict[str, str], workspace_default: str | None) -> Launch:
    """What the backend is asked to start for a container: its function's requests and limits,
    on the node and with the GPUs it reserved."""
    fn = c.pool.function
    return Launch(
        container_id=c.id,
        env=env,
        cpu=float(fn.get("cpu")),
        memory_mb=int(fn.get("memory")),
        label=fn.name,
        cpu_limit=fn.get("cpu_limit"),
        memory_limit_mb=fn.get("memory_limit"),
        isolation=fn.get("isolation") or workspace_default,
        block_network=bool(fn.get("block_network")),
        gpus=c.reservation.gpus,
        node=c.reservation.node,
    )


def startup_timeout(fn: FunctionRecord) -> float:
    """Seconds a container may take to become ready: startup_timeout, else its timeout (at
    least a minute)."""
    return float(fn.get("startup_timeout") or max(fn.get("timeout"), 60.0))
