"""Handing a pool's ready inputs to its ready containers: emptiest container first, in
batches, or one input at a time by the pool's router where it has one (the model gateway's,
which sends a request to the replica holding its adapter or its prompt's prefix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .pools import Container, Input, Pool


class Router(Protocol):
    def __call__(self, inp: Input, candidates: list[Container]) -> Container: ...


def room(c: Container) -> int:
    """How many more inputs the container takes now."""
    fn = c.pool.function
    free = fn.per_container - len(c.running)
    if fn.get("single_use_containers"):
        free = min(free, 1 - c.served - len(c.running))
    return free


def hand_out(pool: Pool, assign: Callable[[Container, list[Input]], None]) -> None:
    """Give ready inputs to ready containers while any has room."""
    ready = [c for c in pool.containers.values() if c.state == "ready" and c.channel]
    if pool.router is not None:
        while pool.queue.ready:
            candidates = [c for c in ready if room(c) > 0]
            if not candidates:
                return
            inp = pool.queue.popleft()
            assign(pool.router(inp, candidates), [inp])
        return
    ready.sort(key=lambda c: len(c.running))  # spread work: fill the emptiest first
    for c in ready:
        free = room(c)
        if free <= 0 or not pool.queue.ready:
            continue
        assign(c, [pool.queue.popleft() for _ in range(min(free, len(pool.queue.ready)))])
