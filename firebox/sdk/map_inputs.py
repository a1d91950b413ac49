"""A map's inputs: the user's iterables, sync or async, as the (args, kwargs) of each input."""

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
