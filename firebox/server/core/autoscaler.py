"""The autoscaler: a pure policy from one pool's state to what to do with its containers.

It reads no clock and touches no process: the scheduler describes a pool (inputs queued and
running, its containers, the function's limits, the time) and applies what comes back. Starts
are decided as work arrives or leaves; stops on the scheduler's tick.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence, Sized
from dataclasses import dataclass
from typing import Protocol

from .functions import FunctionRecord


@dataclass(frozen=True)
class Limits:
    """A function's autoscaler settings."""

    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0  # kept beyond demand while there is any
    target_inputs: int = 1  # inputs one container is meant to hold at once
    scaledown_window: float = 60.0  # seconds a surplus container may stay idle

    @classmethod
    def of(cls, fn: FunctionRecord) -> Limits:
        limit = fn.get("max_containers")
        return cls(int(fn.get("min_containers")), None if limit is None else int(limit),
                   int(fn.get("buffer_containers")), fn.target_per_container,
                   float(fn.get("scaledown_window")))


class ContainerView(Protocol):
    """What the policy reads of a container (the scheduler's own, not a copy)."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...  # starting | ready | stopping

    @property
    def running(self) -> Sized: ...  # the inputs it holds

    @property
    def idle_since(self) -> float: ...  # monotonic seconds; meaningful when it holds none


@dataclass(frozen=True)
class PoolState:
    limits: Limits
    queued: int
    running: int
    containers: Collection[ContainerView]
    now: float  # monotonic seconds
    input_seconds: float | None = None  # how long its inputs run, where run back to back
    start_seconds: float | None = None  # how long its containers take to start, as observed

    def wanted(self) -> int:
        return wanted(self.limits, self.queued + self.running, self.input_seconds,
                      self.start_seconds)


@dataclass(frozen=True)
class Idle:
    """A ready container holding no input, that its pool could do without."""

    id: str
    cpu: float
    idle_since: float


def wanted(limits: Limits, demand: int, input_seconds: float | None = None,
           start_seconds: float | None = None) -> int:
    """Containers a pool should have for `demand` inputs queued and running: one per
    `target_inputs` of them, but where their run time and the pool's start time are known, no
    more than the work needs to end by the time another container could start (one that
    would be ready only once the work is done is not started)."""
    want = math.ceil(demand / limits.target_inputs) if demand else 0
    if demand and input_seconds is not None and start_seconds:
        work = demand * input_seconds / limits.target_inputs  # seconds of one container's
        want = min(want, max(1, math.ceil(work / start_seconds)))
    if demand:
        want += limits.buffer_containers
    want = max(want, limits.min_containers)
    return want if limits.max_containers is None else min(want, limits.max_containers)


def starts(pool: PoolState) -> int:
    """How many containers to start now (each as long as capacity allows)."""
    live = sum(1 for c in pool.containers if c.state != "stopping")
    return max(0, pool.wanted() - live)


def stops(pool: PoolState) -> list[str]:
    """The containers to stop: idle ones past the scaledown window, longest idle first, while
    the pool has more than it wants."""
    live = [c for c in pool.containers if c.state != "stopping"]
    surplus = len(live) - pool.wanted()
    idle = sorted((c for c in live if c.state == "ready" and len(c.running) == 0),
                  key=lambda c: c.idle_since)
    chosen: list[str] = []
    for c in idle:
        if surplus <= 0:
            break
        if pool.now - c.idle_since >= pool.limits.scaledown_window:
            chosen.append(c.id)
            surplus -= 1
    return chosen


def evictions(idle: Sequence[Idle], free_cpu: float, cpu: float) -> list[str]:
    """Idle containers of other pools to stop so that `cpu` cores come free, longest idle first;
    `free_cpu` counts what is free now and what containers already stopping will free."""
    chosen: list[str] = []
    for c in sorted(idle, key=lambda c: c.idle_since):
        if free_cpu >= cpu:
            break
        free_cpu += c.cpu
        chosen.append(c.id)
    return chosen
