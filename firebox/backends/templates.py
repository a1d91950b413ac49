"""Memory snapshots on one machine: templates that fork containers.

A function with enable_memory_snapshot=True starts its first container as a *template*: a
runtime (runtime/template.py) that loads the code, imports it and runs the @enter(snap=True)
hooks, then waits. Every container of that function is then a fork of it, the first included:
the child is moved into the container's own cgroup before it runs anything of its own, connects
as that container, runs the other @enter hooks and serves. Forks share the template's
namespaces and file view (its directory, /tmp, its network namespace); each has its own cgroup,
process group, identity and channel.

A template serves one key: the function's spec (code, image, options), its parameters, the
container environment and the isolation mode. A different key for the same function retires
the old template once its last container ends; an idle one is let go after TEMPLATE_IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..wire import ids, settings
from ..wire.spec import DEFAULTS
from . import cgroups, isolation, netns
from .base import Launch

if TYPE_CHECKING:
    from .local import LocalBackend

MESSAGE_MAX = 64 * 1024
FORK_TIMEOUT = 10.0  # seconds a fork may take to name itself
LINE_PIECE = 64 * 1024  # bytes of a line of output passed on at a time: a longer one is split
# Each container's own: the rest of the environment is the template's.
PER_CONTAINER = (settings.TOKEN.name, settings.CONTAINER_ID.name, settings.MODAL_TASK_ID.name)


@dataclass
class Awaited:
    """A line a launched runtime prints on stdout when it gets to where the backend waits for
    it (backends/stored.py): never logged. seen: True then, False if the runtime exits first."""

    text: str
    seen: asyncio.Future[bool]
    owns_exit: bool = False  # an exit before the line is the waiter's to handle, not reported


@dataclass
class Process:
    """A launched runtime: a standby (container_id None), a container's, or a template."""

    key: str  # the name it was launched under: its directory and first cgroup name
    proc: asyncio.subprocess.Process | Forked
    mode: str
    sandbox: isolation.Walls
    group: cgroups.Cgroup | None
    container_id: str | None = None
    memory_limit_mb: int | None = None
    image_files_missing: bool = False  # its image has files this isolation cannot show
    link: netns.Link | None = None  # its network namespace with egress, if it has one
    template: Template | None = None  # the template this process is
    forked_from: Template | None = None  # the template this container was forked from
    awaited: Awaited | None = None
    killed: bool = False  # the control plane stopped it

    def saw(self, stream: str, text: str) -> bool:
        """Whether this line of its output is the one awaited (and so not to be logged)."""
        a = self.awaited
        if a is None or stream != "stdout" or text != a.text or a.seen.done():
            return False
        a.seen.set_result(True)
        return True

    def exited_unseen(self) -> bool:
        """It exited: whether before the awaited line, with the exit the waiter's to report
        (never when the control plane stopped it)."""
        a = self.awaited
        if a is None or a.seen.done():
            return False
        a.seen.set_result(False)
        return a.owns_exit and not self.killed


class TemplateGone(Exception):
    pass


class Forked:
    """A container forked from a template, as the backend watches it: the part of
    asyncio.subprocess.Process it uses (pid, output, wait), its exit reported by the template."""

    stdin = None

    def __init__(self, name: str, pid: int, stdout: asyncio.StreamReader,
                 stderr: asyncio.StreamReader, go: int) -> None:
        self.name, self.pid, self.stdout, self.stderr, self._go = name, pid, stdout, stderr, go
        self.group: cgroups.Cgroup | None = None
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def go(self, env: dict[str, str]) -> None:
        """Make it the container whose identity env holds; it is in that container's cgroup."""
        if self._go >= 0:
            os.write(self._go, json.dumps(env).encode() + b"\n")
            self._close_go()

    def _close_go(self) -> None:
        if self._go >= 0:
            os.close(self._go)
            self._go = -1

    def exited(self, code: int) -> None:
        self._close_go()
        if not self._exit.done():
            self._exit.set_result(code)

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


class Template:
    """The backend's end of one template's socket, and the fork it keeps ready: already in a
    cgroup of its own (moving a process into a cgroup takes 10-20 ms here), it only learns
    which container it is."""

    def __init__(self, key: str, pool: str, cgroups_on: bool) -> None:
        self.key, self.pool, self.cgroups_on = key, pool, cgroups_on
        self.host, self.inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.host.setblocking(False)
        self.inner.set_inheritable(True)
        self.process: Process | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(lambda f: f.exception())  # never "never retrieved"
        self.pending: dict[str, asyncio.Future[int]] = {}  # fork name -> its host pid
        self.children: dict[str, Forked] = {}  # by fork name, the spare included
        self.spare: Forked | None = None
        self._making_spare: asyncio.Task[None] | None = None
        self.retired = False
        self.gone_ = False
        self._idle: asyncio.TimerHandle | None = None
        loop.add_reader(self.host.fileno(), self._readable)

    def launched(self, process: Process) -> None:
        self.process = process
        process.template = self
        self.inner.close()

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.host.recvmsg(
                MESSAGE_MAX, socket.CMSG_SPACE(struct.calcsize("3i")))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.gone()
            return
        message = json.loads(data)
        if "ready" in message and not self.ready.done():
            self.ready.set_result(None)
            self.spare_soon()
        elif "forked" in message:
            future = self.pending.pop(message["forked"], None)
            if future is not None and not future.done():
                future.set_result(_sender_pid(ancillary))
        elif "exit" in message:
            child = self.children.pop(message["exit"], None)
            if child is not None:
                child.exited(int(message["code"]))
                if child is self.spare:  # ended unused: it was never a container
                    self.spare = None
                    if child.group is not None:
                        child.group.remove()
            self._idle_soon()

    async def take(self, container_id: str, limits: cgroups.Limits) -> Forked:
        """A fork for the container, in its cgroup (named after it, with its limits): the
        spare if there is one, else one forked now. Another spare is made after."""
        if self.gone_:
            raise TemplateGone()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        child, self.spare = self.spare, None
        try:
            if child is not None and child.group is not None:
                await asyncio.to_thread(cgroups.retarget, child.group, limits, container_id)
            elif child is None:
                child = await self._fork(container_id, limits)
        except BaseException:
            if child is not None:
                self._kill(child)
            raise
        finally:
            self.spare_soon()
        return child

    def spare_soon(self) -> None:
        if (self.spare is not None or self._making_spare is not None or self.gone_
                or self.retired):
            return

        async def make() -> None:
            try:
                name = ids.new_template_key()
                spare = await self._fork(name, cgroups.Limits(DEFAULTS["cpu"], None,
                                                              DEFAULTS["memory"], None))
            except (TemplateGone, TimeoutError, OSError):
                return
            finally:
                self._making_spare = None
            if self.gone_ or self.spare is not None or self.retired:
                self._kill(spare)
            else:
                self.spare = spare

        self._making_spare = asyncio.get_running_loop().create_task(make())

    async def _fork(self, name: str, limits: cgroups.Limits) -> Forked:
        child = await self._fork_process(name)
        try:
            if self.cgroups_on:
                child.group = await asyncio.to_thread(cgroups.Cgroup.create, name, limits)
                await asyncio.to_thread(child.group.adopt, child.pid)
        except BaseException:
            self._kill(child)
            raise
        return child

    def _kill(self, child: Forked) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, 9)
        if child.group is not None:
            child.group.remove()
            child.group = None

    async def _fork_process(self, name: str) -> Forked:
        if self.gone_:
            raise TemplateGone()
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        go_r, go_w = os.pipe()
        named = self.pending[name] = loop.create_future()
        try:
            socket.send_fds(self.host, [json.dumps({"fork": name}).encode()],
                            [out_w, err_w, go_r])
        except OSError:
            self.pending.pop(name, None)
            for fd in (out_r, err_r, go_w):
                os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, go_r):
                os.close(fd)
        try:
            pid = await asyncio.wait_for(named, FORK_TIMEOUT)
        except BaseException:
            self.pending.pop(name, None)
            for fd in (out_r, err_r, go_w):
                os.close(fd)
            raise
        child = Forked(name, pid, await _reader(out_r), await _reader(err_r), go_w)
        self.children[name] = child
        return child

    def _in_use(self) -> bool:
        """Whether a container (not the spare) was forked from it or is being forked."""
        return bool(self.pending) or any(c is not self.spare for c in self.children.values())

    def _idle_soon(self) -> None:
        if self.gone_ or self._in_use():
            return
        if self.retired:
            self.gone()
            return
        if self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(
                settings.TEMPLATE_IDLE.get(), self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if not self._in_use():
            self.gone()

    def retire(self) -> None:
        """Fork no more; let it go once its last container ends."""
        self.retired = True
        if self.spare is not None:
            spare, self.spare = self.spare, None
            self._kill(spare)
        self._idle_soon()

    def gone(self) -> None:
        """Let it go (or it went): the template exits when its socket closes, and its
        containers with it."""
        if self.gone_:
            return
        self.gone_ = True
        if self._idle is not None:
            self._idle.cancel()
        asyncio.get_running_loop().remove_reader(self.host.fileno())
        self.host.close()
        if self.inner.fileno() != -1:
            self.inner.close()
        if not self.ready.done():
            self.ready.set_exception(TemplateGone())
        for future in self.pending.values():
            if not future.done():
                future.set_exception(TemplateGone())
        self.pending.clear()
        if self.spare is not None:
            spare, self.spare = self.spare, None
            self._kill(spare)
        for child in self.children.values():
            child.exited(-9)  # killed with it (their parent-death signal)
        self.children.clear()


class Templates:
    """The templates of this backend, one per function (and parameters) at a time."""

    def __init__(self) -> None:
        self.by_pool: dict[str, Template] = {}
        # Stored snapshots being made (backends/stored.py), by key: where each is once made.
        self.making: dict[str, asyncio.Future[tuple[Path, dict[str, Any]] | None]] = {}
        self.spares: dict[str, Process] = {}  # a stored snapshot's sandbox restored ahead
        self.sparing: set[str] = set()  # the keys whose spare is being restored

    @staticmethod
    def key_for(env: dict[str, str], mode: str, leave_out: Sequence[str] = PER_CONTAINER,
                *more: str) -> tuple[str, str] | None:
        """(pool, key) of a launch whose function snapshots its memory; None for others. The
        key: the function's spec, mode, env but leave_out, and more (stored.py: versions)."""
        raw = env.get(settings.SNAPSHOT_KEY.name)
        if not raw:
            return None
        pool, _, digest = raw.partition(":")
        shared = sorted((k, v) for k, v in env.items() if k not in leave_out)
        key = hashlib.sha256(json.dumps([digest, mode, shared, *more]).encode()).hexdigest()
        return pool, key[:16]

    def current(self, pool: str, key: str) -> Template | None:
        t = self.by_pool.get(pool)
        if t is not None and (t.key != key or t.gone_):
            del self.by_pool[pool]
            t.retire()
            return None
        return t

    def drop(self, t: Template) -> None:
        t.gone()
        if self.by_pool.get(t.pool) is t:
            del self.by_pool[t.pool]

    def close(self) -> None:
        for t in list(self.by_pool.values()):
            self.drop(t)


async def start(backend: LocalBackend, launch: Launch, mode: str, volumes: Sequence[str],
                layers: Sequence[Path], config: dict[str, Any], pool: str, key: str) -> bool:
    """Start the container as a fork of its function's template (made first if there is
    none); whether it did. Where one cannot be used, it says why and starts cold."""
    cid = launch.container_id
    why = "its GPUs" if launch.gpus else "its volumes" if volumes else None
    if why is not None:
        await backend._say(cid, f"firebox: enable_memory_snapshot is not used with {why} yet; "
                             "this container starts cold")
        return False
    t = backend.templates.current(pool, key)
    made_here = t is None
    began = time.perf_counter()
    if t is None:
        t = backend.templates.by_pool[pool] = Template(key, pool, backend.cgroups)
        name = ids.new_template_key()
        env = backend._container_env(launch, mode, volumes, config)
        env[settings.TEMPLATE_FD.name] = str(t.inner.fileno())
        env[settings.CONTAINER_ROOT.name] = str(backend.workdir / name)
        try:
            p = await backend._spawn(name, mode, env,
                                     cgroups.limits_for(launch), [], layers=layers,
                                     block_network=launch.block_network, image=config,
                                     pass_fds=(t.inner.fileno(),))
        except BaseException:
            backend.templates.drop(t)
            raise
        t.launched(p)
        # Until it is ready, it is the container: its output, its failure, its kill.
        p.container_id, p.memory_limit_mb = cid, cgroups.memory_limit_for(launch)
        backend.procs[cid] = p
    try:
        await asyncio.shield(t.ready)
    except TemplateGone:
        if made_here:
            return True  # it ended as this container: its exit is reported as the container's
        await backend._say(cid, "firebox: the memory snapshot's template ended before it was "
                             "ready; this container starts cold")
        return False
    assert t.process is not None
    made_ms = (time.perf_counter() - began) * 1000
    if made_here:
        t.process.container_id = None
        backend.procs.pop(cid, None)
    began = time.perf_counter()
    try:
        forked = await t.take(cid, cgroups.limits_for(launch))
    except (TemplateGone, TimeoutError, OSError) as exc:
        await backend._say(cid, f"firebox: could not fork the memory snapshot's template "
                                f"({type(exc).__name__}); this container starts cold")
        return False
    forked.go(child_env(launch.env))
    ms = (time.perf_counter() - began) * 1000
    p = Process(cid, forked, mode, t.process.sandbox, forked.group, container_id=cid,
                memory_limit_mb=cgroups.memory_limit_for(launch), link=t.process.link,
                forked_from=t)
    backend.procs[cid] = p
    backend._watch_soon(p)
    await backend._say(cid, f"firebox: made the memory snapshot in {made_ms:.0f} ms (code "
                         "imported, @enter(snap=True) hooks run); this container is forked "
                         f"from it in {ms:.1f} ms" if made_here else
                    f"firebox: started from the memory snapshot in {ms:.1f} ms")
    return True


def child_env(env: dict[str, str]) -> dict[str, str]:
    """What a fork sets in its environment: its identity."""
    return {k: env[k] for k in PER_CONTAINER if k in env}


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The pid of a message's sender, as this process's pid namespace numbers it (the kernel
    translates SCM_CREDENTIALS)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return struct.unpack("3i", data[:struct.calcsize("3i")])[0]
    raise TemplateGone("a fork named itself without its credentials")


async def _reader(fd: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=LINE_PIECE)
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader
