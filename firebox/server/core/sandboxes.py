"""Sandboxes: long-lived containers for untrusted code that clients exec commands in.

The backend runs each sandbox's processes (backends/base.py, SandboxLauncher); the control plane
keeps its record: whose it is, its state in the store, its timeouts, its volumes' working
copies, and its commands' output for clients to stream (api/sandboxes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...backends.base import (
    SANDBOX_MEMORY_MB,
    SandboxFailed,
    SandboxFileError,
    SandboxGone,
    SandboxLaunch,
    SandboxProcess,
)
from ...store import schema as s
from ...wire import ids
from . import sandbox_volumes
from .errors import ApiError, invalid

if TYPE_CHECKING:
    from .plane import ControlPlane

MAX_OUTPUT = 64 * 1024 * 1024  # output kept per command; beyond it, output is dropped
MAX_TIMEOUT = 24 * 3600
KILLED = 137  # the returncode of a sandbox whose command was killed (terminate, timeout)
MAIN = "main"  # the exec id of the command the sandbox was created with


def check_allowlist(cidrs: Sequence[str]) -> list[str]:
    """The allowlist as normalised IPv4 networks; ValueError says which entry is wrong."""
    out = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} in cidr_allowlist is not a CIDR range like "
                             "'10.0.0.0/8'.") from None
        if net.version != 4:
            raise ValueError(f"{cidr!r}: sandboxes have IPv4 only; allowlist IPv4 ranges.")
        out.append(str(net))
    return out


class Exec:
    """One command in a sandbox: its output so far and, once it ended, its exit code."""

    def __init__(self, exec_id: str) -> None:
        self.id = exec_id
        self.chunks: list[tuple[int, bytes]] = []  # (1 stdout | 2 stderr, data)
        self.size = 0
        self.truncated = False
        self.code: int | None = None
        self.changed = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, fd: int, data: bytes) -> None:
        if self.size + len(data) > MAX_OUTPUT:
            self.truncated = True
            return
        self.size += len(data)
        self.chunks.append((fd, data))
        self._wake()

    async def messages(self, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Its output from chunk `after` on, as it comes, then its exit: what a client
        streams."""
        i = after
        while True:
            changed = self.changed
            while i < len(self.chunks):
                fd, data = self.chunks[i]
                i += 1
                yield {"fd": fd, "data": data}
            if self.code is not None:
                yield {"exit": self.code, "truncated": self.truncated}
                return
            await changed.wait()

    def finish(self, code: int) -> None:
        if self.code is None:
            self.code = code
            if self.timer is not None:
                self.timer.cancel()
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class Spec:
    args: list[str]
    env: dict[str, str]
    workdir: str | None
    timeout: float
    idle_timeout: float | None
    cpu: float | None
    memory_mb: int | None
    # Its image's layers, newest first: a snapshot's (ly-...) over those of an image the
    # workspace built (64 hex digits), which hold Python packages too.
    layers: list[str]
    volumes: dict[str, str] = field(default_factory=dict)  # mount path -> volume id
    network: list[str] | None = None  # allowlisted CIDRs; None: no network at all
    ports: dict[int, bool] = field(default_factory=dict)  # tunnelled port -> TLS only
    pty: bool = False  # the command it was created with runs on a terminal
    image_id: str | None = None  # the built image it was made from, kept while it runs
    rooted: bool = False  # that image is a registry image's: the sandbox's whole root

    def pooled(self) -> bool:
        """Whether a warm sandbox fits: the backend boots those with no image and the default
        limits; env and workdir go with each command, and the rest is the control plane's."""
        return (not self.layers and not self.volumes and self.network is None
                and self.cpu is None
                and self.memory_mb in (None, SANDBOX_MEMORY_MB))


@dataclass
class Sandbox:
    """A sandbox as the control plane keeps it; `process` is the backend's, None until booted."""

    id: str
    workspace_id: str
    app_id: str
    name: str | None
    isolation: str
    spec: Spec
    process: SandboxProcess | None = None
    execs: dict[str, Exec] = field(default_factory=dict)
    status: str = "running"
    returncode: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_active: float = field(default_factory=time.monotonic)
    serial: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    copies: list[sandbox_volumes.WorkingCopy] = field(default_factory=list)

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def busy(self) -> bool:
        return any(e.code is None for e in self.execs.values())


class _Reports:
    """What a sandbox's processes report, applied to its record (backends' SandboxEvents)."""

    def __init__(self, manager: SandboxManager, sb: Sandbox) -> None:
        self.manager = manager
        self.sb = sb

    def exec_output(self, exec_id: str, fd: int, data: bytes) -> None:
        e = self.sb.execs.get(exec_id)
        if e is not None:
            e.add(fd, data)

    def exec_exited(self, exec_id: str, code: int) -> None:
        sb = self.sb
        e = sb.execs.get(exec_id)
        if e is not None:
            e.finish(code)
        sb.last_active = time.monotonic()
        if exec_id == MAIN:
            self.manager.spawn(sb, self.manager.terminate(sb, "finished",
                                                          KILLED if code < 0 else code))

    def sandbox_ended(self, oom_killed: bool) -> None:
        if self.sb.status == "running":
            status = "terminated" if oom_killed else "failed"
            self.manager.spawn(self.sb, self.manager.finish(self.sb, status, KILLED))


class SandboxManager:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.launcher = cp.backend.sandboxes
        # Volumes' working copies, bound into their sandboxes and committed when they end.
        self.volumes = cp.settings.state_dir / "sandbox-volumes"
        self.running: dict[str, Sandbox] = {}
        self._idle: asyncio.Task[None] | None = None
        self.tunnels = cp.tunnels

    @property
    def networks(self) -> bool:
        """Whether sandboxes can have a network of their own (cidr_allowlist=, tunnels)."""
        return self.launcher.networks()

    @property
    def isolation(self) -> str:
        try:
            return self.launcher.isolation()
        except SandboxFailed as exc:
            raise ApiError(500, "RemoteError", str(exc)) from None

    async def start(self) -> None:
        now = time.time()
        await self.cp.db.write(lambda conn: conn.execute(
            s.sandboxes.update().where(s.sandboxes.c.status == "running")
            .values(status="terminated", returncode=KILLED, finished_at=now)
        ))
        shutil.rmtree(self.volumes, ignore_errors=True)
        self._idle = asyncio.create_task(self._idle_loop())
        self.launcher.start()

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        await asyncio.gather(*(self.terminate(sb, "terminated") for sb in
                               list(self.running.values())), return_exceptions=True)
        await self.launcher.close()

    # ---- lifecycle --------------------------------------------------------------------------

    async def create(self, workspace_id: str, app_id: str, name: str | None,
                     tags: dict[str, str], spec: Spec) -> Sandbox:
        mode = self.isolation
        if name is not None:
            taken = await self.cp.db.read(sa.select(s.sandboxes.c.id).where(
                s.sandboxes.c.app_id == app_id, s.sandboxes.c.name == name,
                s.sandboxes.c.status == "running"))
            if taken:
                raise ApiError(409, "AlreadyExistsError",
                               f"A running sandbox named '{name}' exists in this app already; "
                               "terminate it or pick another name.")
        warm = self.launcher.take_warm() if spec.pooled() else None
        sid = warm.id if warm is not None else ids.new_sandbox_id()
        sb = Sandbox(id=sid, workspace_id=workspace_id, app_id=app_id, name=name,
                     isolation=warm.isolation if warm is not None else mode, spec=spec,
                     process=warm)
        if warm is not None:
            warm.events = _Reports(self, sb)
        now = time.time()
        await self.cp.db.write(lambda conn: conn.execute(s.sandboxes.insert().values(
            id=sid, workspace_id=workspace_id, app_id=app_id, name=name, tags=json.dumps(tags),
            isolation=mode, status="running", created_at=now)))
        self.running[sid] = sb
        if warm is None:
            try:
                await self._boot(sb)
            except BaseException as exc:
                if sb.status == "running":  # else its terminate finishes it
                    await self.finish(sb, "failed", None)
                if isinstance(exc, ApiError):
                    raise
                if isinstance(exc, SandboxFailed):
                    raise ApiError(500, "RemoteError", str(exc)) from exc
                raise ApiError(500, "RemoteError",
                               f"Sandbox {sid} failed to start: {exc}") from exc
        sb.last_active = time.monotonic()
        asyncio.get_running_loop().call_later(
            spec.timeout, lambda: self.spawn(sb, self.terminate(sb, "timeout")))
        if spec.args:
            self.exec(sb, spec.args, {}, spec.workdir, None, exec_id=MAIN, pty=spec.pty)
        return sb

    async def _boot(self, sb: Sandbox) -> None:
        """Check its volumes out and have the backend boot it, with its tunnels."""
        spec = sb.spec
        for i, (path, volume_id) in enumerate(sorted(spec.volumes.items())):
            sb.copies.append(await sandbox_volumes.check_out(
                self.cp, sb.workspace_id, volume_id, path, self.volumes / sb.id / str(i)))
        launch = SandboxLaunch(
            sb.id, sb.isolation, env=spec.env, cpu=spec.cpu,
            memory_mb=spec.memory_mb or SANDBOX_MEMORY_MB,
            layers=tuple(lid for lid in spec.layers if lid.startswith(ids.SNAPSHOT_LAYER)),
            image_layers=tuple(self.cp.images.path(lid) for lid in spec.layers
                               if not lid.startswith(ids.SNAPSHOT_LAYER)),
            volumes={copy.mount_path: copy.local for copy in sb.copies},
            network=tuple(spec.network) if spec.network is not None else None,
            image_root=spec.rooted)
        process = await self.launcher.start_sandbox(launch, _Reports(self, sb))
        sb.process = process
        if sb.status != "running":  # terminated while it booted
            await process.kill()
            await process.remove()
            raise ApiError(409, "SandboxTerminatedError", f"Sandbox {sb.id} ended ({sb.status}).")
        if spec.ports:
            assert process.address is not None
            await self.tunnels.open(sb.id, process.address, spec.ports)

    def spawn(self, sb: Sandbox, coro: Any) -> None:
        task = asyncio.create_task(coro)
        sb.tasks.add(task)
        task.add_done_callback(sb.tasks.discard)

    async def terminate(self, sb: Sandbox, status: str, returncode: int | None = KILLED) -> None:
        if sb.status != "running":
            await sb.done.wait()
            return
        sb.status = status
        sb.returncode = returncode
        if sb.copies and sb.process is not None:
            # gVisor may hold writes in its own page cache: flush them before the commit.
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                await asyncio.wait_for(self.file_op(sb, "sync", "/"), 10)
        for e in sb.execs.values():
            e.finish(-signal.SIGKILL)
        if sb.process is not None:
            await sb.process.kill()
        await self.finish(sb, status, returncode)

    async def finish(self, sb: Sandbox, status: str, returncode: int | None) -> None:
        """Record its end, once: its processes removed, its volumes committed."""
        if sb.done.is_set():
            return
        sb.status, sb.returncode = status, returncode
        await self.tunnels.close(sb.id)
        if sb.process is not None:
            await sb.process.remove()
        for e in sb.execs.values():
            e.finish(-signal.SIGKILL)
        await sandbox_volumes.commit_all(self.cp, sb.copies, sb.id)
        await asyncio.to_thread(shutil.rmtree, self.volumes / sb.id, True)
        now = time.time()
        await self.cp.db.write(lambda conn: conn.execute(
            s.sandboxes.update().where(s.sandboxes.c.id == sb.id)
            .values(status=status, returncode=returncode, finished_at=now)))
        sb.done.set()
        # Kept a while so clients still read the last output and the exit codes of its commands.
        asyncio.get_running_loop().call_later(300, lambda: self.running.pop(sb.id, None))

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for sb in list(self.running.values()):
                idle = sb.spec.idle_timeout
                if (sb.status == "running" and idle and sb.process is not None
                        and not sb.busy() and now - sb.last_active > idle):
                    self.spawn(sb, self.terminate(sb, "timeout"))

    # ---- commands and files -----------------------------------------------------------------

    @contextlib.contextmanager
    def _reach(self, sb: Sandbox) -> Iterator[SandboxProcess]:
        """Its processes, for a request; a 409 once they have ended."""
        try:
            if sb.process is None:
                raise SandboxGone(sb.id)
            yield sb.process
        except SandboxGone:
            raise ApiError(409, "SandboxTerminatedError",
                           f"Sandbox {sb.id} has ended ({sb.status}); create a new one.") from None
        sb.last_active = time.monotonic()

    def exec(self, sb: Sandbox, args: list[str], env: dict[str, str], workdir: str | None,
             timeout: float | None, exec_id: str | None = None, pty: bool = False,
             size: list[int] | None = None) -> Exec:
        """Start a command; with pty=True on a terminal of its own, of size (rows, columns)
        (stdout and stderr then arrive together, as stdout)."""
        if not args or not all(isinstance(a, str) for a in args):
            raise invalid("exec needs a command: one or more strings.")
        e = Exec(exec_id or sb.next_id(ids.EXEC))
        sb.execs[e.id] = e
        with self._reach(sb) as process:
            # The sandbox's own env goes with each command: a warm sandbox booted without it.
            process.exec(e.id, args, {**sb.spec.env, **env}, workdir or sb.spec.workdir, pty,
                         size)
        if timeout:
            e.timer = asyncio.get_running_loop().call_later(
                timeout, lambda: self.signal(sb, e.id, signal.SIGKILL))
        return e

    def signal(self, sb: Sandbox, exec_id: str, sig: int) -> None:
        with contextlib.suppress(ApiError), self._reach(sb) as process:
            process.signal(exec_id, sig)

    def resize(self, sb: Sandbox, exec_id: str, size: list[int]) -> None:
        with contextlib.suppress(ApiError), self._reach(sb) as process:
            process.resize(exec_id, size)

    def stdin(self, sb: Sandbox, exec_id: str, data: bytes, eof: bool) -> None:
        if exec_id not in sb.execs:
            raise ApiError(404, "NotFoundError", f"No command {exec_id} in sandbox {sb.id}.")
        with self._reach(sb) as process:
            process.stdin(exec_id, data, eof)

    async def file_op(self, sb: Sandbox, op: str, path: str, data: bytes = b"",
                      **options: Any) -> tuple[Any, bytes]:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise invalid(f"{path!r} is not an absolute path inside the sandbox.")
        with self._reach(sb) as process:
            reply = process.file_op(op, path, data, options)
        try:
            return await reply
        except SandboxGone:
            raise ApiError(409, "SandboxTerminatedError",
                           f"Sandbox {sb.id} ended ({sb.status}).") from None
        except SandboxFileError as exc:
            status = 404 if exc.kind == "FileNotFoundError" else 409
            raise ApiError(status, exc.kind, str(exc)) from None

    async def snapshot(self, sb: Sandbox) -> list[str]:
        """Copy the sandbox's writes into a new layer; returns the image's layers, newest
        first (the new one over the layers the sandbox started from)."""
        if sb.spec.rooted:
            raise invalid("snapshot_filesystem of a sandbox from a registry image is not "
                          "supported yet; build its state into the image with run_commands.")
        await self.file_op(sb, "sync", "/")
        assert sb.process is not None  # the sync reached it
        layer = ids.new_snapshot_layer_id()
        await sb.process.snapshot(layer)
        return [layer, *sb.spec.layers]
