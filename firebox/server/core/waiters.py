"""In-memory waiters: a blocked request (a Queue get, a full put) sleeps until a change to what
it waits on wakes it, instead of polling the database."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class Waiters:
    """Futures of blocked requests, by key; notify() wakes every one waiting on a key.

    A waiter registers before it checks the database, so a change committed between its check
    and its wait still wakes it.
    """

    def __init__(self) -> None:
        self._by_key: dict[Hashable, set[asyncio.Future[None]]] = {}

    def register(self, key: Hashable) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._by_key.setdefault(key, set()).add(fut)
        return fut

    def discard(self, key: Hashable, fut: asyncio.Future[None]) -> None:
        waiting = self._by_key.get(key)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._by_key[key]

    def notify(self, key: Hashable) -> None:
        for fut in self._by_key.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, key: Hashable, fut: asyncio.Future[None], timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            self.discard(key, fut)
