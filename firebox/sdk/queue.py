"""Queue: durable FIFOs on the control plane, one per partition, shared by every container and
caller. Blocking gets and puts wait on the server, which wakes them when something changes."""

from __future__ import annotations

import asyncio
import queue as std_queue
from collections.abc import AsyncIterator
from typing import Any

from .. import client as client_mod
from .. import wire
from .._sync import live_method, live_method_gen
from ..exception import InvalidError
from .named import NamedObject

MAX_ITEM_BYTES = 1024 * 1024
DEFAULT_TTL = 24 * 3600


def _value(v: Any) -> bytes:
    data = wire.serialize(v, "Queue item")
    if len(data) > MAX_ITEM_BYTES:
        raise InvalidError(
            f"A Queue item is {len(data)} bytes serialized; items are at most 1 MiB. Store large "
            "data in a Volume or Dict and put a reference to it on the queue."
        )
    return data


class _Deadline:
    """How long the next long poll may wait: all of `timeout`, in slices, or nothing."""

    def __init__(self, block: bool, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise InvalidError("timeout must be a non-negative number of seconds.")
        self.block = block
        loop = asyncio.get_running_loop()
        self.end = None if timeout is None else loop.time() + timeout

    def next_wait(self) -> float:
        if not self.block:
            return 0.0
        if self.end is None:
            return client_mod.LONG_POLL
        return max(0.0, min(client_mod.LONG_POLL, self.end - asyncio.get_running_loop().time()))

    def over(self) -> bool:
        if not self.block:
            return True
        return self.end is not None and asyncio.get_running_loop().time() >= self.end


class Queue(NamedObject):
    """`q = Queue.from_name("jobs", create_if_missing=True)`; `q.put(x)`; `q.get()`."""

    _path = "/v1/queues"
    _kind = "queue"

    async def _put(self, values: list[Any], block: bool, timeout: float | None,
                   partition: str | None, partition_ttl: int) -> None:
        data = [_value(v) for v in values]
        deadline = _Deadline(block, timeout)
        while True:
            resp = await self._call("put", {"values": data, "partition": partition,
                                            "ttl": partition_ttl, "wait": deadline.next_wait()})
            if resp["ok"]:
                return
            if deadline.over():
                raise std_queue.Full(
                    "The queue partition is full (5,000 items); get items out or wait longer."
                )

    async def _get(self, n: int, block: bool, timeout: float | None,
                   partition: str | None) -> list[Any]:
        deadline = _Deadline(block, timeout)
        while True:
            resp = await self._call("get", {"n": n, "partition": partition,
                                            "wait": deadline.next_wait()})
            if resp["values"]:
                return [wire.deserialize(v, "Queue item") for v in resp["values"]]
            if deadline.over():
                if block:
                    raise std_queue.Empty()
                return []

    @live_method
    async def put(self, v: Any, block: bool = True, timeout: float | None = None, *,
                  partition: str | None = None, partition_ttl: int = DEFAULT_TTL) -> None:
        """Add v to the end of the partition; when it is full, wait (block) or raise queue.Full."""
        await self._put([v], block, timeout, partition, partition_ttl)

    @live_method
    async def put_many(self, vs: list[Any], block: bool = True, timeout: float | None = None, *,
                       partition: str | None = None, partition_ttl: int = DEFAULT_TTL) -> None:
        """Add all of vs, in order, at once."""
        await self._put(list(vs), block, timeout, partition, partition_ttl)

    @live_method
    async def get(self, block: bool = True, timeout: float | None = None, *,
                  partition: str | None = None) -> Any:
        """Take the first item; None if empty and not blocking; queue.Empty on timeout."""
        values = await self._get(1, block, timeout, partition)
        return values[0] if values else None

    @live_method
    async def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                       partition: str | None = None) -> list[Any]:
        """Take up to n_values items, waiting (if blocking) for at least one."""
        return await self._get(n_values, block, timeout, partition)

    @live_method
    async def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in the partition, or in all partitions with total=True."""
        if partition is not None and total:
            raise InvalidError("Pass either partition= or total=True to len, not both.")
        return int((await self._call("len", {"partition": partition, "total": total}))["len"])

    @live_method
    async def clear(self, *, partition: str | None = None, all: bool = False) -> None:  # noqa: A002
        """Remove the items of the partition, or of every partition with all=True."""
        await self._call("clear", {"partition": partition, "all": all})

    @live_method_gen
    async def iterate(self, *, partition: str | None = None,
                      item_poll_timeout: float = 0.0) -> AsyncIterator[Any]:
        """Yield the partition's items without taking them, then new ones as they come, until
        none comes for item_poll_timeout seconds."""
        after = 0
        while True:
            deadline = _Deadline(item_poll_timeout > 0, item_poll_timeout)
            while True:
                resp = await self._call("items", {"partition": partition, "after": after,
                                                  "wait": deadline.next_wait()})
                if resp["items"] or deadline.over():
                    break
            if not resp["items"]:
                return
            for item_id, value in resp["items"]:
                after = item_id
                yield wire.deserialize(value, "Queue item")


__all__ = ["Queue"]
