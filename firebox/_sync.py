"""One async implementation, two faces: blocking calls and `.aio` calls, both run on firebox's
own event loop thread, so the SDK works the same from plain scripts, threads and user loops."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """firebox's event loop, started on first use in a daemon thread."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new)
                new.call_soon(ready.set)
                new.run_forever()

            _thread = threading.Thread(target=run, name="firebox-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = new
        return _loop


def stop(last: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
    """Run last() on firebox's loop, then stop the loop and its thread, if it was started: a
    memory snapshot's template does before it forks, as a thread does not survive a fork. The
    next call starts a new one."""
    global _loop, _thread
    with _lock:
        old, thread, _loop, _thread = _loop, _thread, None, None
    if old is None or old.is_closed() or thread is None:
        return
    if last is not None:
        asyncio.run_coroutine_threadsafe(last(), old).result(timeout=10)
    old.call_soon_threadsafe(old.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        old.close()


def on_loop_thread() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run coro on firebox's loop and block until it is done."""
    if on_loop_thread():
        coro.close()
        raise RuntimeError("A blocking firebox call was made from firebox's own event loop.")
    fut = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return fut.result()
    except BaseException:
        fut.cancel()
        raise


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Await coro, run on firebox's loop, from any other event loop."""
    if on_loop_thread():
        return await coro
    fut = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return await asyncio.wrap_future(fut)
    except asyncio.CancelledError:
        fut.cancel()
        raise


async def _next(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


async def _close(agen: AsyncIterator[Any]) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """Blocking iteration over an async iterator that lives on firebox's loop."""
    try:
        while True:
            try:
                yield run(_next(agen))
            except StopAsyncIteration:
                return
    finally:
        try:
            run(_close(agen))
        except Exception:
            pass


async def iterate_async(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        while True:
            try:
                yield await run_async(_next(agen))
            except StopAsyncIteration:
                return
    finally:
        try:
            await run_async(_close(agen))
        except Exception:
            pass


def _flatten(chunks: Iterator[list[T]]) -> Iterator[T]:
    for chunk in chunks:
        yield from chunk


async def _aflatten(chunks: AsyncIterator[list[T]]) -> AsyncIterator[T]:
    async for chunk in chunks:
        for item in chunk:
            yield item


class _Bound:
    def __init__(self, impl: Callable[..., Any], obj: Any, is_gen: bool,
                 chunks: bool = False) -> None:
        self._impl, self._obj, self._is_gen, self._chunks = impl, obj, is_gen, chunks
        functools.update_wrapper(self, impl)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._impl(self._obj, *args, **kwargs)
        if self._chunks:
            return _flatten(iterate(result))
        return iterate(result) if self._is_gen else run(result)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        result = self._impl(self._obj, *args, **kwargs)
        if self._chunks:
            return _aflatten(iterate_async(result))
        return iterate_async(result) if self._is_gen else run_async(result)


class live_method:
    """Turns `async def f(self, ...)` into a method with a blocking call and a `.aio` form."""

    def __init__(self, impl: Callable[..., Any]) -> None:
        self.impl = impl
        self.is_gen = False
        functools.update_wrapper(self, impl)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _Bound(self.impl, obj, self.is_gen)


class live_method_gen(live_method):
    """Like live_method for `async def f(self, ...)` generators: sync and async iterators."""

    def __init__(self, impl: Callable[..., Any]) -> None:
        super().__init__(impl)
        self.is_gen = True


class live_method_chunks(live_method):
    """Like live_method_gen for generators that yield lists of items: the caller gets the items,
    and a blocking caller crosses threads once per list instead of once per item."""

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _Bound(self.impl, obj, True, chunks=True)


class live_classmethod:
    """A classmethod with a blocking call and a `.aio` form."""

    def __init__(self, impl: Callable[..., Any]) -> None:
        self.impl = impl

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return _Bound(self.impl, objtype, False)
