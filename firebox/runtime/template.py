"""A memory snapshot's template: a runtime that loads a function's code, imports it and runs its
@enter(snap=True) hooks once, then forks every container of that function from that state.

The backend (backends/templates.py) asks on a unix socket (SOCK_SEQPACKET, one JSON message
each): `fork`, passing the child's stdout, stderr and a go pipe; the child names itself
(`forked`, with its pid as credentials the kernel translates for the backend), waits on the go
pipe while the backend moves it into a cgroup until a container needs it: its identity comes on
the pipe; then it connects to the control plane as that container, runs the other @enter hooks
and serves. The template
reports each child's `exit` and exits itself when the backend closes the socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from .. import _sync
from ..exception import InvalidError
from ..wire import messages, settings, user_code
from . import loopback
from .container import (
    Runtime,
    channel,
    load,
    relay,
    serve,
    set_parent_death_signal,
    start,
)

MESSAGE_MAX = 1024 * 1024  # bytes of one request: a container's identity (never its secrets)


@dataclass
class Loaded:
    """What every container forked from the template shares: the code, imported, and a class's
    instance after its @enter(snap=True) hooks."""

    hello: messages.Hello
    target: Any
    instance: Any


def run_template() -> None:
    set_parent_death_signal()
    fd = settings.TEMPLATE_FD.get()
    assert fd is not None
    os.environ.pop(settings.TEMPLATE_FD.name)
    sock = socket.socket(fileno=fd)
    started = time.perf_counter()
    loaded = _loaded("the containers forked from it")
    sock.send(json.dumps({"ready": round((time.perf_counter() - started) * 1000, 1)}).encode())
    _fork_server(sock, loaded)


def run_checkpointed() -> None:
    """A gVisor container whose memory is stored (backends/stored.py): loaded like a template,
    it says so on stdout and waits on stdin, where the backend checkpoints it. Each restore of
    it reads a container's identity there and goes on as that container."""
    ready = os.environ.pop(settings.CHECKPOINT.name)
    loaded = _loaded(None)  # gVisor saves and restores every thread
    print(ready, flush=True)
    line = sys.stdin.buffer.readline()  # the checkpoint is taken here; restores go on from it
    if not line.strip():
        raise SystemExit(0)
    message = json.loads(line)
    os.environ.update(message["env"])
    print(message["restored"], flush=True)
    random.seed()  # `random` reseeds itself after a fork, not after a restore
    _reseed()
    asyncio.run(_serve(loaded, "stored"))


def _loaded(after: str | None) -> Loaded:
    """The code loaded, the @enter(snap=True) hooks run, and every connection closed.
    after: who will lack the threads left running (a fork's children), to warn of them."""
    loaded = asyncio.run(_load())
    # firebox's own loop thread stops (a @enter(snap=True) hook that used a Dict or a Queue
    # started it) and its connections close; other threads do not survive a fork.
    _sync.stop(user_code.sdk().forget_client)
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others and after is not None:
        print(f"firebox: the memory snapshot has threads running ({', '.join(others)}); they "
              f"do not exist in {after}", file=sys.stderr)
    return loaded


async def _load() -> Loaded:
    await relay()  # for the @enter(snap=True) hooks; each container listens itself
    async with channel() as ws:

        async def enter(hello: messages.Hello) -> Runtime:
            runtime = Runtime(ws, hello, await load(ws, hello))
            await runtime.enter_snapshotted()
            return runtime

        runtime = await start(ws, enter)
        runtime.pool.shutdown(wait=True)
    loopback.close()
    return Loaded(runtime.hello, runtime.target, runtime.instance)


def _fork_server(sock: socket.socket, loaded: Loaded) -> None:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, MESSAGE_MAX, 3)
                except OSError:
                    data, fds = b"", []
                if not data:  # the backend let it go (or died): its children die with it
                    os._exit(0)
                request = json.loads(data)
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    _child(request, fds, sock, loaded)
                for fd in fds:
                    os.close(fd)
                sel.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, request["fork"]))
            else:
                pid, container_id = key.data
                sel.unregister(key.fileobj)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                sock.send(json.dumps({"exit": container_id, "code": code}).encode())


def _child(request: dict[str, Any], fds: list[int], sock: socket.socket, loaded: Loaded) -> None:
    """The forked container: never returns."""
    code: Any = 1
    try:
        os.setsid()
        out, err, go = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd in (out, err, devnull):
            os.close(fd)
        credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
        sock.sendmsg([json.dumps({"forked": request["fork"]}).encode()],
                     [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)])
        sock.close()
        # Its identity, once the backend has put it in the container's cgroup (a spare fork
        # waits here until a container needs it; EOF: it is not needed).
        with open(go, "rb") as f:
            line = f.readline()
        if not line.strip():
            raise SystemExit(0)
        os.environ.update(json.loads(line))
        os.environ.pop(settings.PARENT_PID.name, None)  # its parent is the template
        set_parent_death_signal()
        _reseed()
        asyncio.run(_serve(loaded, "template"))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


async def _serve(loaded: Loaded, started: str) -> None:
    await relay()
    async with channel() as ws:

        async def enter(hello: messages.Hello) -> Runtime:
            if (hello["function_id"], hello["function"], hello.get("params")) != (
                    loaded.hello["function_id"], loaded.hello["function"],
                    loaded.hello.get("params")):
                raise InvalidError("This container's function is not the one its memory "
                                   "snapshot was made from.")
            runtime = Runtime(ws, hello, loaded.target)
            runtime.instance = loaded.instance
            await runtime.enter_after_restore()
            return runtime

        await serve(ws, await start(ws, enter), started)


def _reseed() -> None:
    """Each container its own random numbers: `random` reseeds itself after a fork, the
    libraries that keep a global generator are reseeded here if the template imported them."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        torch.seed()
