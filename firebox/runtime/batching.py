"""Groups single inputs into batches for @batched functions: a batch goes when it is full or
when its first input has waited wait_ms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class Batcher:
    def __init__(self, max_size: int, wait_s: float,
                 run: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        self.max_size = max_size
        self.wait_s = wait_s
        self.run = run
        self.items: list[dict[str, Any]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.running: set[asyncio.Task[None]] = set()

    def add(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        if len(self.items) >= self.max_size:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.wait_s, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        items, self.items = self.items, []
        if items:
            task = asyncio.create_task(self.run(items))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
