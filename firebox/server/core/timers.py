"""The scheduler's clocks: each running input's timeout, the delays before retries, startup
timeouts and stop graces, and the tick that runs its periodic work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .pools import Input

log = logging.getLogger("firebox.scheduler")

TICK = 0.5  # seconds between the scheduler's periodic passes (idle scale-down, forgetting)


class Timers:
    def __init__(self, tick: Callable[[], None], on_input_timeout: Callable[[Input], None]
                 ) -> None:
        self.tick = tick
        self.on_input_timeout = on_input_timeout
        self._ticking: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticking = asyncio.create_task(self._tick_loop(), name="scheduler-tick")

    def stop(self) -> None:
        if self._ticking:
            self._ticking.cancel()

    def input_started(self, inp: Input, timeout: float) -> None:
        """Time an input handed to a container; past `timeout`, on_input_timeout gets it."""
        inp.timer = asyncio.get_running_loop().call_later(timeout, self.on_input_timeout, inp)

    def input_done(self, inp: Input) -> None:
        """The input left its container (finished, cancelled, requeued): stop timing it."""
        if inp.timer is not None:
            inp.timer.cancel()
            inp.timer = None

    def later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> None:
        """Run callback(*args) in `seconds` (a retry's delay, a startup timeout, a grace)."""
        asyncio.get_running_loop().call_later(seconds, callback, *args)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
