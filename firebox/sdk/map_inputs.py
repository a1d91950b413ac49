"""A map's inputs: the user's iterables, sync or async, as the (args, kwargs) of each input, and
the bookkeeping that keeps a map's memory bounded however many inputs it has."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ..exception import InvalidError


def zip_args(iterators: tuple[Iterable[Any], ...], kwargs: dict[str, Any]) -> Any:
    if not iterators:
        raise InvalidError("map needs at least one iterable of inputs.")
    if all(hasattr(it, "__aiter__") for it in iterators) and len(iterators) == 1:
        return _amap(iterators[0], lambda x: ((x,), kwargs))
    return map_items(zip(*iterators), lambda args: (tuple(args), kwargs))


def map_items(items: Any, fn: Callable[[Any], Any]) -> Any:
    if hasattr(items, "__aiter__"):
        return _amap(items, fn)
    return (fn(x) for x in items)


async def _amap(items: Any, fn: Callable[[Any], Any]) -> AsyncIterator[Any]:
    async for x in items:
        yield fn(x)


async def aiter_chunks(items: Any) -> AsyncIterator[Any]:
    """Iterate sync or async inputs; sync ones are pulled in a thread, a chunk at a time, so a
    slow user iterator never stalls firebox's event loop."""
    if hasattr(items, "__aiter__"):
        async for x in items:
            yield x
        return
    it = iter(items)
    while True:
        chunk = await asyncio.to_thread(lambda: list(itertools.islice(it, 512)))
        if not chunk:
            return
        for x in chunk:
            yield x


class Finished:
    """Which of a map's inputs have their outcome, in memory bounded by how far out of order
    they end (all those below `low`, and a set of those above), and a window that holds the
    sender back while `window` inputs are out without an outcome, so a map of a million
    inputs keeps at most that many queued on the server and in flight here."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.low = 0
        self.above: set[int] = set()
        self.count = 0
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return self.count

    def add(self, idx: int) -> bool:
        """Record input idx's outcome; False where it was recorded already."""
        if idx < self.low or idx in self.above:
            return False
        self.count += 1
        self.changed.set()
        if idx != self.low:
            self.above.add(idx)
            return True
        self.low += 1
        while self.low in self.above:
            self.above.remove(self.low)
            self.low += 1
        return True

    async def room(self, posted: int) -> None:
        """Wait until fewer than `window` of the `posted` inputs are without an outcome."""
        while posted - self.count >= self.window:
            self.changed.clear()
            await self.changed.wait()
