"""The runtime inside a container: dial the control plane, load the user's code, run lifecycle
hooks, execute inputs with the function's concurrency and batching, and report outputs."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import inspect
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect, unix_connect

from .. import _sync, wire
from ..exception import InvalidError
from ..wire import messages, settings, user_code
from ..wire.spec import FunctionSpec
from . import loopback, web
from .batching import Batcher, run_batch
from .execs import Execs
from .inputs import Inputs

SOCKET_CLOSE_GRACE = 2.0  # seconds a cancelled WebSocket's app has to see the disconnect
OUTPUT_COST = 256  # bytes an output's id, status and timing add to its frame
OUTPUT_LINGER = 0.001  # seconds outputs wait to travel together while more are coming


def set_parent_death_signal() -> None:
    """Die with the control plane: a killed server must not leave containers behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    parent = settings.PARENT_PID.get()
    if parent and os.getppid() != parent:
        os._exit(1)


async def fetch_code(ws: ClientConnection, hello: messages.Hello, root: Path) -> None:
    """Fetch the app's files (and a serialized definition) over the container channel: no
    second connection, and no HTTP client to import before the first input. Each file comes a
    chunk at a time and is written as it comes."""
    spec = hello["function"]
    code = spec.get("code") or {}
    wanted = dict(code.get("files") or {})
    if spec.get("serialized"):
        wanted["__serialized__.pkl"] = spec["serialized"]
    if not wanted:
        return
    places: dict[str, list[Path]] = {}  # digest -> the files with that content
    for rel, digest in wanted.items():
        path = root / rel
        if not path.resolve().is_relative_to(root.resolve()):
            raise InvalidError(f"refusing to write code outside the container: {rel}")
        places.setdefault(digest, []).append(path)
    await ws.send(wire.pack(messages.blobs_wanted(sorted(places))))
    begun: set[str] = set()
    done: set[str] = set()
    while True:
        message = wire.unpack(await ws.recv())
        if message.get(messages.TAG) == messages.BLOBS:
            break
        digest = message.get("digest")
        if message.get(messages.TAG) != messages.BLOB or digest not in places:
            raise InvalidError(
                f"expected the app's code, got a {message.get(messages.TAG)!r} message")
        first = places[digest][0]
        first.parent.mkdir(parents=True, exist_ok=True)
        with open(first, "ab" if digest in begun else "wb") as f:
            f.write(message["data"])
        begun.add(digest)
        if message["last"]:
            done.add(digest)
    missing = [rel for rel, digest in wanted.items() if digest not in done]
    if missing:
        raise InvalidError(f"The server did not send the app's file {missing[0]} (it no longer "
                           "stores its content); deploy or run the app again.")
    for digest, paths in places.items():
        for path in paths[1:]:  # the same content under other names
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[0], path)


def load_target(spec: FunctionSpec, root: Path) -> Any:
    """The user's function or class, by import (or unpickling when serialized=True)."""
    if spec.get("serialized"):
        return wire.deserialize((root / "__serialized__.pkl").read_bytes(), "function definition")
    sys.path.insert(0, str(root))
    module = importlib.import_module(spec["code"]["module"] if spec.get("code") else spec["module"])
    obj: Any = module
    for part in spec["qualname"].split("."):
        obj = getattr(obj, part)
    return user_code.sdk().target(obj)


class Runtime:
    def __init__(self, ws: ClientConnection, hello: messages.Hello, target: Any) -> None:
        self.ws = ws
        self.spec: FunctionSpec = hello["function"]
        self.hello = hello
        self.params = user_code.unpack_params(hello.get("params"))
        self.target = target
        self.instance: Any = None
        self.tasks: dict[str, asyncio.Task[None]] = {}  # web requests and sockets
        self.outbox: deque[messages.OutputItem] = deque()
        self.outbox_ready = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.wake_pending = False
        self.loop_thread = threading.get_ident()
        self.max_inputs = int(self.spec.get("max_inputs") or 1)
        self.pool = ThreadPoolExecutor(max_workers=self.max_inputs, thread_name_prefix="hook")
        # Inputs beyond max_inputs (prefetched by the control plane) wait there, in order.
        self.inputs = Inputs(self.max_inputs, self.callable_for, self._report, self.loop)
        self.batchers: dict[str | None, Batcher] = {}
        # The ASGI apps served here: a web function's under None, a class's web methods' under
        # their names.
        self.web_apps: dict[str | None, Any] = {}
        self.sockets: dict[str, asyncio.Queue[dict[str, Any]]] = {}  # input id -> client events
        self.execs = Execs(lambda m: self.ws.send(wire.pack(m)))

    # ---- start and stop --------------------------------------------------------------------

    async def enter(self) -> None:
        await self.enter_snapshotted()
        await self.enter_after_restore()

    async def enter_snapshotted(self) -> None:
        """What a memory snapshot holds: a class's instance and its @enter(snap=True) hooks."""
        if self.spec.get("kind") != "class" or self.spec.get("web"):
            return
        self.instance = user_code.sdk().instantiate(self.target, self.params)
        for hook in user_code.sdk().lifecycle_methods(self.target, "enter"):
            if hook.snap:
                await self._call_hook(hook.raw_f)

    async def enter_after_restore(self) -> None:
        """What every container does itself: the other @enter hooks, its web apps."""
        if self.spec.get("web"):
            self.web_apps[None] = await web.build_app(self.spec["web"], self.target)
            return
        if self.spec.get("kind") != "class":
            return
        for hook in user_code.sdk().lifecycle_methods(self.target, "enter"):
            if not hook.snap:
                await self._call_hook(hook.raw_f)
        for name, info in self.spec.get("methods", {}).items():
            if info.get("web"):
                self.web_apps[name] = await web.build_app(info["web"],
                                                          getattr(self.instance, name))

    async def exit(self) -> None:
        for app in self.web_apps.values():
            if isinstance(app, web.Lifespan):
                try:
                    await app.shutdown()
                except Exception:
                    traceback.print_exc()
        if self.instance is None:
            return
        for hook in user_code.sdk().lifecycle_methods(self.target, "exit"):
            try:
                await self._call_hook(hook.raw_f)
            except Exception:
                traceback.print_exc()

    async def _call_hook(self, f: Any) -> None:
        if inspect.iscoroutinefunction(f):
            await f(self.instance)
        else:
            await asyncio.get_running_loop().run_in_executor(self.pool, f, self.instance)

    def callable_for(self, method: str | None) -> Any:
        if self.spec.get("kind") == "class":
            if method is None or method not in self.spec.get("methods", {}):
                raise InvalidError(f"This class has no remote method {method!r}.")
            return getattr(self.instance, method)
        return self.target

    # ---- the input loop --------------------------------------------------------------------

    async def serve(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        try:
            async for raw in self.ws:
                message = wire.unpack(raw)
                kind = message.get(messages.TAG)
                if kind == messages.INPUTS:
                    for item in message["items"]:
                        self._start_input(item)
                elif kind == messages.WS_IN:
                    inbox = self.sockets.get(message["id"])
                    if inbox is not None:
                        inbox.put_nowait(message["event"])
                elif kind == messages.CANCEL:
                    for input_id in message["ids"]:
                        self._cancel(input_id)
                elif kind in (messages.EXEC, messages.EXEC_STDIN, messages.EXEC_SIGNAL,
                              messages.EXEC_RESIZE):
                    self.execs.handle(message)
                elif kind == messages.STOP:
                    break
        finally:
            await self.execs.close()
            pending = list(self.tasks.values())
            if pending:
                await asyncio.wait(pending, timeout=30)
            await self.inputs.drained(timeout=30)
            await self.exit()
            await self._flush()
            sender.cancel()

    def _start_input(self, item: dict[str, Any]) -> None:
        app = self.web_apps.get(item.get("method"))
        if app is not None:
            input_id = item["id"]
            request = wire.unpack(item["args"])
            inbox = None
            if request.get("type") == "websocket":
                inbox = self.sockets[input_id] = asyncio.Queue()
            task = asyncio.create_task(self._run_web(app, input_id, request, inbox))
            self.tasks[input_id] = task
            task.add_done_callback(lambda _t: (self.tasks.pop(input_id, None),
                                               self.sockets.pop(input_id, None)))
            return
        method = item.get("method")
        info = self.spec.get("methods", {}).get(method, {}) if method else self.spec
        batched = bool(info.get("batched")) if method else bool(self.spec.get("batch_max_size"))
        if batched:
            batcher = self.batchers.get(method)
            if batcher is None:
                batcher = self.batchers[method] = Batcher(
                    int(self.spec["batch_max_size"]),
                    float(self.spec.get("batch_wait_ms") or 0) / 1000,
                    lambda items, m=method: run_batch(lambda: self.callable_for(m), items,
                                                     self.pool, self._report),
                )
            batcher.add(item)
            return
        self.inputs.add(item)

    def _cancel(self, input_id: str) -> None:
        task = self.tasks.get(input_id)
        inbox = self.sockets.get(input_id)
        if task is not None and inbox is not None:
            # A WebSocket's app gets a moment to handle the disconnect before it is cancelled.
            inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
            asyncio.get_running_loop().call_later(SOCKET_CLOSE_GRACE, task.cancel)
            return
        if task is not None:
            task.cancel()
            return
        self.inputs.cancel(input_id)

    def _report(self, input_id: str, status: str, data: bytes | None,
                exec_seconds: float | None = None) -> None:
        """Queue an output to send, from the event loop or from a lane's thread."""
        self.outbox.append({"id": input_id, "status": status, "data": data, "exec": exec_seconds})
        if threading.get_ident() == self.loop_thread:
            self.outbox_ready.set()
        elif not self.wake_pending:  # one wake-up for the outputs that come until it runs
            self.wake_pending = True
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.wake_pending = False
        self.outbox_ready.set()

    async def _send_loop(self) -> None:
        while True:
            await self.outbox_ready.wait()
            if self.inputs.pending() or len(self.tasks) > 1:  # more outputs are coming
                await asyncio.sleep(OUTPUT_LINGER)
            await self._flush()

    async def _flush(self) -> None:
        self.outbox_ready.clear()
        items = [self.outbox.popleft() for _ in range(len(self.outbox))]
        # Frames of about a payload at most: the control plane refuses larger messages.
        frame: list[messages.OutputItem] = []
        size = 0
        for item in items:
            cost = len(item["data"] or b"") + OUTPUT_COST
            if frame and size + cost > wire.max_payload_bytes():
                await self.ws.send(wire.pack(messages.outputs(frame)))
                frame, size = [], 0
            frame.append(item)
            size += cost
        if frame:
            await self.ws.send(wire.pack(messages.outputs(frame)))

    async def _run_web(self, app: Any, input_id: str, request: dict[str, Any],
                       inbox: asyncio.Queue[dict[str, Any]] | None) -> None:
        started = time.perf_counter()
        try:
            if inbox is None:
                await web.serve_request(app, input_id, request, self.ws.send)
            else:
                await web.serve_socket(app, input_id, request, self.ws.send, inbox)
        except asyncio.CancelledError:
            return  # the client went away
        except Exception as exc:
            traceback.print_exc()
            self._report(input_id, wire.FAILURE, wire.encode_exception(exc),
                         time.perf_counter() - started)


def channel() -> Any:
    """The container's channel to the control plane (an async context manager), over its unix
    socket where it has one."""
    server_url = settings.SERVER_URL.required()
    headers = {"Authorization": f"Bearer {settings.TOKEN.required()}"}
    socket_path = settings.SERVER_SOCKET.get()
    if socket_path:  # the control plane's unix socket: works with no network of our own
        return unix_connect(socket_path, "ws://firebox/v1/containers/ws",
                            additional_headers=headers, max_size=None, ping_interval=None,
                            compression=None)
    ws_url = "ws" + server_url.removeprefix("http") + "/v1/containers/ws"
    return connect(ws_url, additional_headers=headers, max_size=None, ping_interval=None,
                   compression=None)


async def relay() -> None:
    socket_path = settings.SERVER_SOCKET.get()
    if socket_path:  # the URLs the control plane hands out, reachable here
        await loopback.relay(settings.SERVER_URL.required(), socket_path)


async def load(ws: ClientConnection, hello: messages.Hello) -> Any:
    """Fetch the app's code and volumes and import the user's function or class."""
    root = settings.CONTAINER_ROOT.get() / "code"
    root.mkdir(parents=True, exist_ok=True)
    await fetch_code(ws, hello, root)
    await _sync.run_async(user_code.sdk().mount_volumes(
        hello["function"].get("volumes") or {}, root.parent))
    os.chdir(root)
    workdir = settings.IMAGE_WORKDIR.get()
    if workdir and os.path.isdir(workdir):  # under process isolation it may not exist
        os.chdir(workdir)
    return load_target(hello["function"], root)


async def serve(ws: ClientConnection, runtime: Runtime, started: str = "cold") -> None:
    """Tell the control plane the container is ready (and how it started: messages.START_KINDS)
    and serve inputs until told to stop."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(ws.close()))
    await ws.send(wire.pack(messages.ready(started)))
    await runtime.serve()
    await commit_volumes()


async def start(ws: ClientConnection, enter: Callable[[messages.Hello], Awaitable[Runtime]]
                ) -> Runtime:
    """The container's runtime, once enter() made it from the control plane's hello; what
    enter() raises is the container's start-up failure."""
    hello: messages.Hello = wire.unpack(await ws.recv())
    try:
        return await enter(hello)
    except BaseException as exc:
        traceback.print_exc()
        await ws.send(wire.pack(messages.init_failed(wire.encode_exception(exc))))
        raise SystemExit(1) from None


async def main(started: str = "cold") -> None:
    set_parent_death_signal()
    await relay()
    async with channel() as ws:

        async def enter(hello: messages.Hello) -> Runtime:
            runtime = Runtime(ws, hello, await load(ws, hello))
            await runtime.enter()
            return runtime

        await serve(ws, await start(ws, enter), started)


async def commit_volumes() -> None:
    """A stopping container commits its volumes; a failure is reported in its output."""
    try:
        await _sync.run_async(user_code.sdk().commit_volumes())
    except Exception:
        traceback.print_exc()


def wait_for_assignment() -> None:
    """A standby runtime has imported everything and waits for the container it will be: its
    environment arrives as one JSON line on stdin. EOF means it is not needed."""
    set_parent_death_signal()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        sys.exit(0)
    os.environ.update(json.loads(line))
    os.environ.pop(settings.STANDBY.name, None)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def run() -> None:
    standby = settings.STANDBY.get()
    if standby:
        wait_for_assignment()
    try:
        asyncio.run(main("standby" if standby else "cold"))
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(1)
