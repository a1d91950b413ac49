"""Which replica of a model server takes a request: the one that already holds its LoRA
adapter, then the one that served its prompt's prefix last (so the engine's KV cache is
reused), both only while that replica's load stays within a bound of the average; else the
least loaded. A pool of a model server dispatches through its ModelRouter (dispatch.py), one
input at a time, among the replicas with room.

A prompt's prefix is a chain of hashes over fixed blocks of its text: block i's hash covers
everything up to the end of block i, so two prompts share block i's hash exactly when they
share their first i+1 blocks. The router remembers, for the most recent blocks it saw, which
replica served them; a request goes to the replica of its longest remembered block, or, when
none is remembered, to the replica its first block hashes to (rendezvous hashing), so
requests that share a system prompt meet on one replica from the first.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from .pools import Container, Input

BLOCK_CHARS = 256  # characters of prompt per prefix block
MAX_BLOCKS = 512  # blocks hashed per prompt (128 KiB of text)
REMEMBERED = 100_000  # prefix blocks remembered, least recently used forgotten first
BALANCE = 0.25  # a replica may run up to (1 + BALANCE) x the average load to keep affinity


@dataclass(slots=True)
class Hint:
    """What a request tells the router: its adapter and its prompt's prefix blocks."""

    adapter: str | None = None
    blocks: list[int] = field(default_factory=list)


def prefix_blocks(text: str) -> list[int]:
    """The chained hashes of the text's whole blocks (a tail shorter than a block is left
    out: it is not shared often enough to matter)."""
    hashes: list[int] = []
    h = 0
    for i in range(0, min(len(text), BLOCK_CHARS * MAX_BLOCKS) - BLOCK_CHARS + 1, BLOCK_CHARS):
        h = hash((h, text[i:i + BLOCK_CHARS]))
        hashes.append(h)
    return hashes


class ModelRouter:
    """A model server's pool's router (dispatch.Router), with what it remembers of where
    adapters and prefixes went."""

    def __init__(self, routing: str) -> None:
        self.prefix = routing == "prefix"
        self.adapters: dict[str, set[str]] = {}  # container id -> adapters sent to it
        self.owners: OrderedDict[int, str] = OrderedDict()  # prefix block -> container id
        self.turn = 0  # replicas equally loaded take turns
        # Where the gateway loaded adapters itself (gateways/direct.py), and its locks.
        self.loaded: dict[str, set[str]] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __call__(self, inp: Input, candidates: list[Container]) -> Container:
        hint: Hint | None = getattr(inp.web, "hint", None)
        allowed = _bounded(candidates)
        choice = None
        if hint is not None and hint.adapter:
            having = [c for c in candidates if hint.adapter in self.adapters.get(c.id, ())]
            allowed = _bounded(having) if having else allowed
            choice = None if having else self._least_loaded(candidates)
        if choice is None and hint is not None and hint.blocks and self.prefix:
            choice = self._by_prefix(hint.blocks, allowed)
        if choice is None:
            choice = self._least_loaded(allowed)
        self._remember(choice, hint)
        return choice

    def _least_loaded(self, candidates: list[Container]) -> Container:
        low = min(len(c.running) for c in candidates)
        tied = sorted((c for c in candidates if len(c.running) == low), key=lambda c: c.id)
        self.turn += 1
        return tied[self.turn % len(tied)]

    def _by_prefix(self, blocks: list[int], allowed: list[Container]) -> Container:
        by_id = {c.id: c for c in allowed}
        for h in reversed(blocks):
            owner = self.owners.get(h)
            if owner in by_id:
                return by_id[owner]
        return max(allowed, key=lambda c: hash((blocks[0], c.id)))

    def _remember(self, c: Container, hint: Hint | None) -> None:
        if hint is None:
            return
        if hint.adapter:
            self.adapters.setdefault(c.id, set()).add(hint.adapter)
            live = c.pool.containers
            for gone in [cid for cid in self.adapters if cid not in live]:
                del self.adapters[gone]
                self.loaded.pop(gone, None)
            for key in [k for k in self.locks if k[0] not in live]:
                del self.locks[key]
        if self.prefix:
            owners = self.owners
            for h in hint.blocks:
                owners[h] = c.id
                owners.move_to_end(h)
            while len(owners) > REMEMBERED:
                owners.popitem(last=False)

    def forget_adapter(self, container_id: str, adapter: str) -> None:
        """The replica could not load the adapter: do not send its requests there for it."""
        self.adapters.get(container_id, set()).discard(adapter)
        self.loaded.get(container_id, set()).discard(adapter)


def _bounded(candidates: list[Container]) -> list[Container]:
    """The candidates whose load, with this request, stays within (1 + BALANCE) of the
    average (consistent hashing with bounded loads)."""
    total = sum(len(c.running) for c in candidates) + 1
    cap = math.ceil((1 + BALANCE) * total / len(candidates))
    return [c for c in candidates if len(c.running) + 1 <= cap] or candidates
