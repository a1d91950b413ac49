"""@batched functions: single inputs grouped into batches (a batch goes when it is full or
when its first input has waited wait_ms), each run as one call of lists."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from .. import wire
from ..exception import InvalidError


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


async def run_batch(resolve: Callable[[], Any], items: list[dict[str, Any]], pool: Executor,
                    report: Callable[[str, str, bytes, float], None]) -> None:
    """Call the function `resolve` gives once for the batch (in `pool` where it is sync) and
    report each input's output, or the batch's error for every input."""
    started = time.perf_counter()
    try:
        decoded = [wire.deserialize(i["args"], "arguments") for i in items]
        f = resolve()
        columns = _columns([a for a, _ in decoded], [k for _, k in decoded], f)
        if inspect.iscoroutinefunction(f):
            results = await f(**columns)
        else:
            ctx = contextvars.copy_context()
            results = await asyncio.get_running_loop().run_in_executor(
                pool, ctx.run, lambda: f(**columns))
        if not isinstance(results, list) or len(results) != len(items):
            raise InvalidError(
                f"A @batched function must return a list as long as its input "
                f"({len(items)}), not {type(results).__name__}"
                + (f" of {len(results)}" if isinstance(results, list) else "")
            )
        share = (time.perf_counter() - started) / len(items)
        for item, result in zip(items, results):
            report(item["id"], wire.SUCCESS, wire.serialize(result, "return value"), share)
    except Exception as exc:
        encoded = wire.encode_exception(exc)
        share = (time.perf_counter() - started) / len(items)
        for item in items:
            report(item["id"], wire.FAILURE, encoded, share)


def _columns(args_list: list[tuple[Any, ...]], kwargs_list: list[dict[str, Any]], f: Any
             ) -> dict[str, list[Any]]:
    """Turn per-input arguments into one list per argument, as @batched functions take them."""
    sig = inspect.signature(f)
    names = [p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    merged: dict[str, list[Any]] = {}
    for args, kwargs in zip(args_list, kwargs_list):
        bound = dict(zip(names, args))
        bound.update(kwargs)
        for name in names:
            if name not in bound:
                raise InvalidError(f"Every input of a @batched function must pass '{name}'.")
            merged.setdefault(name, []).append(bound[name])
    return merged
