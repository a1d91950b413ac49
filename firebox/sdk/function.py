"""Function and FunctionCall: the verbs that send inputs to a function's containers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import client as client_mod
from .. import wire
from .._sync import live_method, live_method_chunks, live_method_gen
from ..exception import InvalidError
from ..wire import calls as wire_calls
from ..wire import ids, settings
from ..wire import spec as wire_spec
from ..wire.user_code import current_input
from .attach import resolve_spec
from .function_call import (
    FunctionCall,
    cancel_quietly,
    poll_outputs,
    result_of,
    value_or_exception,
)
from .map_inputs import Finished, aiter_chunks, map_items, zip_args
from .options import variant_options
from .reporting import MapProgress, current_reporter

if TYPE_CHECKING:
    from .app import App

INPUT_BATCH = 1000  # inputs per request when fanning out
MAP_WINDOW = 50_000  # a map's inputs out without an outcome at most (seconds of fan-out)
INPUT_BATCH_BYTES = 4 * 1024 * 1024


def new_call_id(function_id: str) -> str:
    """A fresh call id, tagged with the function's call key where the server gave us one."""
    return ids.new_call_id(client_mod.current().call_keys.get(function_id))


class Function:
    """A function (or a bound class method) that runs in containers."""

    def __init__(
        self,
        *,
        name: str,
        spec: dict[str, Any] | None = None,
        raw_f: Callable[..., Any] | None = None,
        app: App | None = None,
        lookup: tuple[str, str] | None = None,
        environment_name: str | None = None,
    ) -> None:
        self._name = name
        self._spec = spec or {}
        self._raw_f = raw_f
        self._app = app
        self._lookup = lookup
        self._environment = environment_name or None  # lookup's environment; None: the client's
        self._version: int | None = None  # the deployed version a lookup is pinned to
        self._function_id: str | None = None
        self._parent: Function | None = None
        self._options: dict[str, Any] | None = None
        self._method: str | None = None
        self._params: bytes | None = None
        self._local_obj: Callable[[], Any] | None = None
        self._info: dict[str, Any] = {}
        self._web_url: str | None = None
        self._method_urls: dict[str, str] = {}  # a class's web methods -> their URLs

    def __repr__(self) -> str:
        return f"<firebox.Function {self._name}>"

    # ---- identity --------------------------------------------------------------------------

    @property
    def object_id(self) -> str | None:
        return self._function_id

    def _clone(self) -> Function:
        f = Function(name=self._name, spec=self._spec, raw_f=self._raw_f, app=self._app,
                     lookup=self._lookup, environment_name=self._environment)
        f._function_id, f._version = self._function_id, self._version
        f._parent, f._options = self._parent, self._options
        f._method, f._params, f._local_obj = self._method, self._params, self._local_obj
        f._info = self._info
        f._web_url = self._web_url
        f._method_urls = self._method_urls
        return f

    def _bind(self, method: str, params: bytes | None, local_obj: Callable[[], Any] | None,
              method_info: dict[str, Any]) -> Function:
        f = self._clone()
        f._name = f"{self._name}.{method}"
        f._method, f._params, f._local_obj = method, params, local_obj
        f._info = dict(method_info)
        f._web_url = self._method_urls.get(method)
        return f

    def _hydrate_from(self, function_id: str) -> None:
        self._function_id = function_id

    @property
    def _is_generator(self) -> bool:
        if self._method is not None:
            return bool(self._info.get("is_generator"))
        if "is_generator" in self._info:
            return bool(self._info["is_generator"])
        return bool(self._spec.get("is_generator"))

    async def _resolve(self) -> str:
        if self._function_id is not None:
            return self._function_id
        c = client_mod.current()
        if self._parent is not None:
            parent_id = await self._parent._resolve()
            resp = await c.request(
                "POST", f"/v1/functions/{parent_id}/variants",
                body={"options": await resolve_spec(self._options)},
            )
            self._function_id = resp["function_id"]
            c.call_keys[resp["function_id"]] = resp["call_key"]
            if not self._info:
                self._info = self._parent._info
            return resp["function_id"]
        base = self._name.split(".")[0] if self._method else self._name
        if self._lookup is not None:
            params = {"app": self._lookup[0], "name": self._lookup[1].split(".")[0]}
            if self._version is not None:
                params["version"] = str(self._version)
        elif settings.APP_ID.get():
            params = {"app_id": settings.APP_ID.get(), "name": base}
        else:
            raise InvalidError(
                f"Function '{self._name}' is not running yet: call it inside `with app.run():` "
                "or from `firebox run`, or deploy the app and use Function.from_name."
            )
        resp = await c.request("GET", "/v1/functions/lookup", params=params,
                               environment=self._environment)
        if self._method is None:
            self._info = {k: resp[k] for k in ("kind", "is_generator", "methods", "parameters")}
            self._info["web"] = resp.get("web")
            self._web_url = resp.get("web_url")
            self._method_urls = resp.get("method_urls") or {}
        self._function_id = resp["function_id"]
        c.call_keys[resp["function_id"]] = resp["call_key"]
        return resp["function_id"]

    async def _check_callable(self, verb: str) -> str:
        fid = await self._resolve()
        if self._info.get("web") or self._spec.get("web"):
            raise InvalidError(
                f"'{self._name}' is a web function; send it HTTP requests at its URL "
                f"({self._web_url or 'see get_web_url()'}) instead of calling .{verb}()."
            )
        kind = self._info.get("kind") or self._spec.get("kind", "function")
        if kind == "class" and self._method is None:
            raise InvalidError(
                f"'{self._name}' is a class; call a method of an instance, like "
                f"{self._name}().method.{verb}(...)."
            )
        return fid

    def _request(self, fid: str, call_id: str, kind: wire_calls.Kind,
                 inputs: list[tuple[int, bytes]], wait: float = 0.0) -> wire_calls.CallRequest:
        request: wire_calls.CallRequest = {
            "call_id": call_id,
            "function_id": fid,
            "kind": kind,
            "method": self._method,
            "params": self._params,
            "inputs": inputs,
            "wait": wait,
        }
        parent = current_input.get()  # inside a container: the input whose code calls
        if parent is not None:
            request["parent_input_id"] = parent
        return request

    # ---- single calls ----------------------------------------------------------------------

    @live_method
    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in a container and return its result."""
        fid = await self._check_callable("remote")
        if self._is_generator:
            raise InvalidError(f"'{self._name}' is a generator; use .remote_gen(...) instead.")
        payload = wire.serialize((args, kwargs), "arguments")
        call_id = new_call_id(fid)
        resp = await client_mod.current().call(
            wire_calls.CALL, "/v1/calls",
            self._request(fid, call_id, "remote", [(0, payload)], client_mod.LONG_POLL),
        )
        outputs, after = resp["outputs"], 0
        while True:
            for seq, _idx, status, data in outputs:
                after = seq
                if status in wire.TERMINAL:
                    return result_of(status, data)
            outputs = await poll_outputs(call_id, after)

    @live_method_gen
    async def remote_gen(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Run a generator function in a container and yield its values as they come."""
        fid = await self._check_callable("remote_gen")
        if not self._is_generator:
            raise InvalidError(f"'{self._name}' is not a generator; use .remote(...) instead.")
        payload = wire.serialize((args, kwargs), "arguments")
        call_id = new_call_id(fid)
        resp = await client_mod.current().call(
            wire_calls.CALL, "/v1/calls", self._request(fid, call_id, "generator", [(0, payload)])
        )
        after = 0
        expected = 0  # the number of the next value to yield
        outputs = resp["outputs"]
        while True:
            for seq, _idx, status, data in outputs:
                after = seq
                if status == wire.ITEM:
                    number, value = wire.deserialize(data, "generator value")
                    if number < expected:
                        continue  # the generator ran again after a restart: seen already
                    expected = number + 1
                    yield value
                elif status in wire.TERMINAL:
                    if status != wire.SUCCESS:
                        result_of(status, data)
                    return
            outputs = await poll_outputs(call_id, after)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, in this process."""
        if self._local_obj is not None and self._method is not None:
            return getattr(self._local_obj(), self._method)(*args, **kwargs)
        if self._raw_f is None:
            raise InvalidError(
                f"'{self._name}' was looked up by name; .local() needs the function's code."
            )
        return self._raw_f(*args, **kwargs)

    @live_method
    async def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Start the function and return a FunctionCall to poll for its result."""
        fid = await self._check_callable("spawn")
        if self._is_generator:
            raise InvalidError(f"'{self._name}' is a generator; spawn does not support it.")
        payload = wire.serialize((args, kwargs), "arguments")
        call_id = new_call_id(fid)
        await client_mod.current().call(
            wire_calls.CALL, "/v1/calls", self._request(fid, call_id, "spawn", [(0, payload)])
        )
        return FunctionCall(call_id)

    # ---- fan-out ---------------------------------------------------------------------------

    async def _send_inputs(self, fid: str, call_id: str, kind: wire_calls.Kind, items: Any,
                           created: asyncio.Event | None = None,
                           progress: MapProgress | None = None,
                           finished: Finished | None = None) -> int:
        """Serialize and post all inputs in batches, each once `finished` has room for it
        where given; returns how many were sent."""
        c = client_mod.current()
        idx = 0
        batch: list[tuple[int, bytes]] = []
        size = 0
        posted = False

        async def flush() -> None:
            nonlocal batch, size, posted
            if finished is not None:
                await finished.room(idx - len(batch))
            await c.request("POST", "/v1/calls", packed=self._request(fid, call_id, kind, batch))
            if progress is not None:
                progress.sent(len(batch))
            batch, size, posted = [], 0, True
            if created is not None:
                created.set()

        async for args, kwargs in aiter_chunks(items):
            payload = wire.serialize((args, kwargs), f"arguments of input {idx}")
            batch.append((idx, payload))
            size += len(payload)
            idx += 1
            if len(batch) >= INPUT_BATCH or size >= INPUT_BATCH_BYTES:
                await flush()
        if batch or not posted:
            await flush()
        return idx

    async def _fan_out(
        self, items: Any, order_outputs: bool, return_exceptions: bool
    ) -> AsyncIterator[list[Any]]:
        """The results, in lists of those that are ready together: one list per poll, so a
        blocking caller crosses to firebox's event loop once per list, not once per result."""
        fid = await self._check_callable("map")
        if self._is_generator:
            raise InvalidError(f"'{self._name}' is a generator; map does not support it.")
        call_id = new_call_id(fid)
        total: int | None = None
        created = asyncio.Event()
        progress = current_reporter().map_started(self._name)
        done = Finished(MAP_WINDOW)
        sender = asyncio.create_task(self._send_inputs(fid, call_id, "map", items, created,
                                                       progress, done))

        def on_sent(t: asyncio.Task[int]) -> None:
            nonlocal total
            if not t.cancelled() and t.exception() is None:
                total = t.result()

        sender.add_done_callback(on_sent)
        buffered: dict[int, tuple[str, bytes | None]] = {}
        next_idx = 0
        after = 0
        try:
            while total is None or len(done) < total:
                if sender.done() and sender.exception() is not None:
                    raise sender.exception()  # type: ignore[misc]
                if not created.is_set():
                    waiter = asyncio.ensure_future(created.wait())
                    try:
                        await asyncio.wait([sender, waiter], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    continue
                wait = client_mod.LONG_POLL if sender.done() else 0.2
                outputs = await poll_outputs(call_id, after, wait)
                ready: list[Any] = []
                for seq, idx, status, data in outputs:
                    after = seq
                    if status not in wire.TERMINAL or not done.add(idx):
                        continue
                    if progress is not None:
                        progress.finished(int(status == wire.SUCCESS), int(status != wire.SUCCESS))
                    if not return_exceptions and status != wire.SUCCESS:
                        if ready:
                            yield ready
                        result_of(status, data)
                    if not order_outputs:
                        ready.append(value_or_exception(status, data))
                        continue
                    buffered[idx] = (status, data)
                    while next_idx in buffered:
                        ready.append(value_or_exception(*buffered.pop(next_idx)))
                        next_idx += 1
                if ready:
                    yield ready
        except BaseException:
            if not sender.done():
                sender.cancel()
            if total is None or len(done) < (total or 0):
                asyncio.ensure_future(cancel_quietly(call_id))
            raise
        finally:
            if progress is not None:
                progress.close()

    @live_method_chunks
    async def map(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """Run the function on every element of the zipped iterables, in parallel."""
        items = zip_args(input_iterators, kwargs or {})
        async for chunk in self._fan_out(items, order_outputs, return_exceptions):
            yield chunk

    @live_method_chunks
    async def starmap(
        self,
        input_iterator: Iterable[Any],
        *,
        kwargs: dict[str, Any] | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """Like map, with each element unpacked as the positional arguments."""
        extra = kwargs or {}
        items = map_items(input_iterator, lambda args: (tuple(args), extra))
        async for chunk in self._fan_out(items, order_outputs, return_exceptions):
            yield chunk

    @live_method
    async def for_each(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] | None = None,
        ignore_exceptions: bool = False,
    ) -> None:
        """Run the function on every element and wait for all of them, keeping no results."""
        items = zip_args(input_iterators, kwargs or {})
        async for _ in self._fan_out(items, False, ignore_exceptions):
            pass

    @live_method
    async def spawn_map(
        self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None
    ) -> None:
        """Queue the function on every element and return once all inputs are accepted."""
        fid = await self._check_callable("spawn_map")
        items = zip_args(input_iterators, kwargs or {})
        await self._send_inputs(fid, new_call_id(fid), "spawn_map", items)

    # ---- variants --------------------------------------------------------------------------

    def _variant(self, options: dict[str, Any]) -> Function:
        f = self._clone()
        f._function_id = None
        base = self if self._parent is None else self._parent
        f._parent = base
        merged = dict(self._options or {})
        merged.update({k: v for k, v in options.items() if v is not None})
        f._options = merged
        return f

    def with_options(self, **options: Any) -> Function:
        """A variant with other resources or scaling, served by its own pool of containers."""
        return self._variant(variant_options(self._name, options))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Function:
        if max_inputs < 1 or (target_inputs is not None and not 1 <= target_inputs <= max_inputs):
            raise InvalidError("Need 1 <= target_inputs <= max_inputs.")
        return self._variant({"max_inputs": max_inputs, "target_inputs": target_inputs})

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Function:
        if (not 1 <= max_batch_size <= wire_spec.BATCH_SIZE_MAX
                or not 0 <= wait_ms <= wire_spec.BATCH_WAIT_MS_SDK_MAX):
            raise InvalidError(f"Need 1 <= max_batch_size <= {wire_spec.BATCH_SIZE_MAX} and "
                               f"0 <= wait_ms <= {wire_spec.BATCH_WAIT_MS_SDK_MAX}.")
        return self._variant({"batch_max_size": max_batch_size, "batch_wait_ms": wait_ms})

    @live_method
    async def hydrate(self) -> Function:
        await self._resolve()
        return self

    @live_method
    async def update_autoscaler(
        self,
        *,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
    ) -> None:
        """Change the running function's autoscaler; holds until the app is deployed again."""
        fid = await self._resolve()
        await client_mod.current().request(
            "POST", f"/v1/functions/{fid}/autoscaler",
            body={"min_containers": min_containers, "max_containers": max_containers,
                  "buffer_containers": buffer_containers, "scaledown_window": scaledown_window},
        )

    @live_method
    async def get_web_url(self) -> str | None:
        """The URL a web function is served at; None for other functions."""
        # Looked up by name, or a sibling of the function whose container this is: the server
        # knows its URL.
        looked_up = self._lookup is not None or settings.APP_ID.get()
        if self._web_url is None and looked_up and self._function_id is None:
            await self._resolve()
        return self._web_url

    @property
    def web_url(self) -> str | None:
        """Modal's older name for get_web_url()."""
        return self.get_web_url()  # type: ignore[no-any-return]

    @classmethod
    def from_name(cls, app_name: str, name: str, *, version: int | None = None,
                  environment_name: str | None = None, client: Any = None) -> Any:
        """A deployed function (of the app in environment_name, by default the client's),
        looked up when first used; with version, as that deployed version of the app had it
        (`firebox app history` lists them)."""
        if "." in name:
            raise InvalidError(
                f"'{name}' names a class method; use Cls.from_name('{app_name}', "
                f"'{name.split('.')[0]}') and call the method on an instance."
            )
        f = cls(name=name, lookup=(app_name, name), environment_name=environment_name)
        f._version = checked_version(version)
        return f


def checked_version(version: Any) -> int | None:
    if version is not None and (type(version) is not int or version < 1):
        raise InvalidError(f"version={version!r} is not a deployed version: give its number, "
                           "like version=3 (`firebox app history APP` lists them).")
    return version


__all__ = ["Function"]
