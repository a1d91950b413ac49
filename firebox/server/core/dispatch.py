"""Handing a pool's ready inputs to its ready containers: emptiest container first, in
batches, or one input at a time by the pool's router where it has one (the model gateway's,
which sends a request to the replica holding its adapter or its prompt's prefix).

Where inputs are short, a container is also given a few beyond what it runs at once
(prefetched): they wait in the container, in order, and each starts as soon as one ends,
instead of a round trip through the control plane later. How many: about PREFETCH_SECONDS
of work per slot at the pool's observed input time, at most PREFETCH_MAX; none until an
input has been timed, or where inputs take longer than PREFETCH_SECONDS, so a long input never
holds others back from a container that is free. A container's prefetched inputs are topped
up once half of them have started, in one batch, not one message per input that ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .pools import Container, Input, Pool


class Router(Protocol):
    def __call__(self, inp: Input, candidates: list[Container]) -> Container: ...


PREFETCH_SECONDS = 0.02
PREFETCH_MAX = 32


def prefetch(pool: Pool) -> int:
    """How many inputs each of the pool's containers holds beyond those it runs."""
    mean = pool.exec_mean
    if mean is None or pool.router is not None or not pool.function.prefetches:
        return 0
    per_slot = int(PREFETCH_SECONDS / max(mean, 1e-6))
    return min(PREFETCH_MAX, per_slot * pool.function.per_container)


def timed_backlog(pool: Pool) -> float | None:
    """The pool's input time where its containers run a backlog back to back (they prefetch),
    for the autoscaler to size the pool from; None where each input waits its own hand-out."""
    return pool.exec_mean if prefetch(pool) else None


def room(c: Container, extra: int = 0) -> int:
    """How many more inputs the container takes now, holding `extra` beyond its slots."""
    fn = c.pool.function
    free = fn.per_container + extra - len(c.running)
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
    extra = prefetch(pool)
    for depth in (0, extra) if extra else (0,):  # free slots everywhere, then prefetching
        for c in ready:
            free = room(c, depth)
            # Prefetch is topped up in batches: once half of it has started.
            if free < max(1, depth // 2) or not pool.queue.ready:
                continue
            assign(c, [pool.queue.popleft() for _ in range(min(free, len(pool.queue.ready)))])
