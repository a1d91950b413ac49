"""Sandboxes: long-lived containers for untrusted code that clients exec commands in.

Each sandbox runs under gVisor (or bubblewrap namespaces where runsc is missing) with a
writable overlay root of its own, no network, and cgroup limits. Its init is sandbox_agent,
driven over its stdin/stdout: the control plane asks it to start commands, passes their stdin
in and keeps their output here for clients to stream (api_sandboxes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...backends import cgroups, isolation, sandbox_net
from ...store import schema as s
from ...wire import ids
from . import sandbox_volumes
from .errors import ApiError, invalid

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.sandboxes")

HEAD = struct.Struct(">II")
READY_TIMEOUT = 60.0  # a sandbox whose agent has not started by then failed to start
MAX_OUTPUT = 64 * 1024 * 1024  # output kept per command; beyond it, output is dropped
DEFAULT_MEMORY_MB = 1024  # the hard memory limit when memory= is not given
MAX_TIMEOUT = 24 * 3600
KILLED = 137  # the returncode of a sandbox whose command was killed (terminate, timeout)
MAIN = "main"  # the exec id of the command the sandbox was created with
POOL_ENV = "FIREBOX_SANDBOX_POOL"  # how many default sandboxes to keep booted; 0 turns it off
DEFAULT_POOL = 2


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
    layers: list[str]  # snapshot layer ids, newest first
    volumes: dict[str, str] = field(default_factory=dict)  # mount path -> volume id
    network: list[str] | None = None  # allowlisted CIDRs; None: no network at all
    ports: dict[int, bool] = field(default_factory=dict)  # tunnelled port -> TLS only
    pty: bool = False  # the command it was created with runs on a terminal

    def pooled(self) -> bool:
        """Whether a warm sandbox fits: it was booted with no image and the default limits;
        env and workdir go with each command, and the rest is the control plane's state."""
        return (not self.layers and not self.volumes and self.network is None
                and self.cpu is None
                and self.memory_mb in (None, DEFAULT_MEMORY_MB))


POOL_SPEC = Spec(args=[], env={}, workdir=None, timeout=MAX_TIMEOUT, idle_timeout=None, cpu=None,
                 memory_mb=None, layers=[])


@dataclass
class Running:
    id: str
    workspace_id: str
    app_id: str
    name: str | None
    isolation: str
    spec: Spec
    base: Path
    root: isolation.SandboxRoot
    sandbox: isolation.Sandbox
    proc: asyncio.subprocess.Process | None = None
    group: cgroups.Cgroup | None = None
    execs: dict[str, Exec] = field(default_factory=dict)
    requests: dict[str, asyncio.Future[tuple[dict[str, Any], bytes]]] = field(default_factory=dict)
    ready: asyncio.Future[None] | None = None
    status: str = "running"
    returncode: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_active: float = field(default_factory=time.monotonic)
    serial: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    copies: list[sandbox_volumes.WorkingCopy] = field(default_factory=list)
    link: sandbox_net.Link | None = None

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def send(self, header: dict[str, Any], data: bytes = b"") -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise ApiError(409, "SandboxTerminatedError",
                           f"Sandbox {self.id} has ended ({self.status}); create a new one.")
        h = json.dumps(header).encode()
        self.proc.stdin.write(HEAD.pack(len(h), len(data)) + h + data)
        self.last_active = time.monotonic()

    def busy(self) -> bool:
        return any(e.code is None for e in self.execs.values())


class SandboxManager:
    def __init__(self, cp: ControlPlane, hidden: Sequence[Path]) -> None:
        self.cp = cp
        self.dir = cp.settings.state_dir / "sandboxes"
        self.images = cp.settings.state_dir / "sandbox-layers"
        self.runsc_root = cp.settings.state_dir / "runsc-sandboxes"
        self.base_layers = cp.settings.state_dir / "sandbox-base"  # isolation.sandbox_base
        self.hidden = [cp.settings.state_dir, *hidden]
        self.running: dict[str, Running] = {}
        self.cgroups = cgroups.available()
        self._idle: asyncio.Task[None] | None = None
        self.pool: list[Running] = []  # booted default sandboxes, oldest first
        self.pool_size = max(0, int(os.environ.get(POOL_ENV) or DEFAULT_POOL))
        self._filling: asyncio.Task[None] | None = None
        self.tunnels = cp.tunnels
        # Cold boots at once: a boot is CPU-bound, so a burst of creates shares the cores better
        # finishing a few at a time than all at the end together.
        self._boots = asyncio.Semaphore(4 * (os.cpu_count() or 2))

    @property
    def isolation(self) -> str:
        try:
            return isolation.sandbox_default_mode()
        except isolation.IsolationUnavailable as exc:
            raise ApiError(500, "RemoteError", str(exc)) from None

    async def start(self) -> None:
        now = time.time()
        await self.cp.db.write(lambda conn: conn.execute(
            s.sandboxes.update().where(s.sandboxes.c.status == "running")
            .values(status="terminated", returncode=KILLED, finished_at=now)
        ))
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.base_layers, ignore_errors=True)  # made again from the host as it is
        self._idle = asyncio.create_task(self._idle_loop())
        self._refill()

    async def close(self) -> None:
        self.pool_size = 0
        if self._idle is not None:
            self._idle.cancel()
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        pool, self.pool = self.pool, []
        await asyncio.gather(*(self.terminate(sb, "terminated") for sb in
                               [*pool, *self.running.values()]), return_exceptions=True)
        if sandbox_net.available():
            await asyncio.to_thread(sandbox_net.shutdown)

    # ---- lifecycle --------------------------------------------------------------------------

    async def create(self, workspace_id: str, app_id: str, name: str | None,
                     tags: dict[str, str], spec: Spec) -> Running:
        mode = self.isolation
        sid = ids.new_sandbox_id()
        if name is not None:
            taken = await self.cp.db.read(sa.select(s.sandboxes.c.id).where(
                s.sandboxes.c.app_id == app_id, s.sandboxes.c.name == name,
                s.sandboxes.c.status == "running"))
            if taken:
                raise ApiError(409, "AlreadyExistsError",
                               f"A running sandbox named '{name}' exists in this app already; "
                               "terminate it or pick another name.")
        warm = self._take() if spec.pooled() else None
        if warm is not None:
            sb, sid = warm, warm.id
            sb.workspace_id, sb.app_id, sb.name, sb.spec = workspace_id, app_id, name, spec
        else:
            sb = self._new(sid, mode, spec)
            sb.workspace_id, sb.app_id, sb.name = workspace_id, app_id, name
        now = time.time()
        await self.cp.db.write(lambda conn: conn.execute(s.sandboxes.insert().values(
            id=sid, workspace_id=workspace_id, app_id=app_id, name=name, tags=json.dumps(tags),
            isolation=mode, status="running", created_at=now)))
        self.running[sid] = sb
        if warm is None:
            try:
                for i, (path, volume_id) in enumerate(sorted(spec.volumes.items())):
                    copy = await sandbox_volumes.check_out(
                        self.cp, workspace_id, volume_id, path, sb.base / "volumes" / str(i))
                    sb.copies.append(copy)
                    sb.sandbox.volumes[path] = copy.local
                if spec.network is not None:
                    sb.link = await asyncio.to_thread(sandbox_net.create, spec.network)
                async with self._boots:
                    await self._launch(sb)
                if spec.ports:
                    assert sb.link is not None
                    await self.tunnels.open(sb.id, sb.link.inner_ip, spec.ports)
            except BaseException as exc:
                await self._finish(sb, "failed", None)
                if isinstance(exc, ApiError):
                    raise
                raise ApiError(500, "RemoteError",
                               f"Sandbox {sid} failed to start: {exc}") from exc
        sb.last_active = time.monotonic()
        asyncio.get_running_loop().call_later(
            spec.timeout, lambda: self._spawn(sb, self.terminate(sb, "timeout")))
        if spec.args:
            self.exec(sb, spec.args, {}, spec.workdir, None, exec_id=MAIN, pty=spec.pty)
        return sb

    def _new(self, sid: str, mode: str, spec: Spec) -> Running:
        base = self.dir / sid
        layers = [self.images / layer for layer in spec.layers]
        return Running(
            id=sid, workspace_id="", app_id="", name=None, isolation=mode,
            spec=spec, base=base,
            root=isolation.SandboxRoot(base / "fs", layers,
                                       from_host=isolation.SANDBOX_FROM_HOST),
            sandbox=isolation.Sandbox(container_id=sid, root=base, hidden=self.hidden,
                                      scratch=base / "bundle", runsc_root=self.runsc_root),
        )

    # ---- the warm pool: default sandboxes booted ahead of create ---------------------------

    def _take(self) -> Running | None:
        """A booted default sandbox, if one is ready; a replacement starts booting."""
        found = None
        while self.pool and found is None:
            sb = self.pool.pop(0)
            if sb.status == "running" and sb.proc is not None and sb.proc.returncode is None:
                found = sb
        self._refill()
        return found

    def _refill(self) -> None:
        if self.pool_size and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        """Boot one sandbox at a time, so refilling takes at most one core from the work."""
        while len(self.pool) < self.pool_size:
            try:
                mode = self.isolation
            except ApiError as exc:
                log.warning("no warm sandboxes: %s", exc)
                return
            sb = self._new(ids.new_sandbox_id(), mode, POOL_SPEC)
            try:
                await self._launch(sb)
            except asyncio.CancelledError:
                await self.terminate(sb, "terminated")
                raise
            except Exception as exc:  # the next create tries again
                log.warning("a warm sandbox failed to start: %s", exc)
                await self.terminate(sb, "failed")
                return
            self.pool.append(sb)

    async def _launch(self, sb: Running) -> None:
        cgroup = None
        if self.cgroups:
            memory = sb.spec.memory_mb or DEFAULT_MEMORY_MB
            limits = cgroups.Limits(cpu=sb.spec.cpu or 0.25, cpu_limit=sb.spec.cpu,
                                    memory_mb=memory, memory_limit_mb=memory)
            sb.group = await asyncio.to_thread(cgroups.Cgroup.create, sb.id, limits)
            cgroup = f"/{cgroups.PARENT}/{sb.id}"
        sb.root.masks = await asyncio.to_thread(isolation.sandbox_base, self.base_layers,
                                                sb.isolation == isolation.GVISOR)
        argv = await asyncio.to_thread(isolation.sandbox_argv, sb.isolation, sb.sandbox,
                                       sb.root, sb.spec.env, cgroup,
                                       sb.link.path if sb.link else None)
        if sb.group is not None:
            argv = isolation.in_cgroup(argv, sb.group.procs_files)
        loop = asyncio.get_running_loop()
        sb.ready = loop.create_future()
        sb.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd=sb.base,
            limit=1 << 26,
        )
        self._spawn(sb, self._read(sb))
        try:
            await asyncio.wait_for(asyncio.shield(sb.ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise ApiError(500, "RemoteError", f"Sandbox {sb.id} did not start within "
                           f"{READY_TIMEOUT:.0f} s; see the server log.") from None

    def _spawn(self, sb: Running, coro: Any) -> None:
        task = asyncio.create_task(coro)
        sb.tasks.add(task)
        task.add_done_callback(sb.tasks.discard)

    async def _read(self, sb: Running) -> None:
        assert sb.proc is not None and sb.proc.stdout is not None and sb.proc.stderr is not None
        out, err = sb.proc.stdout, sb.proc.stderr
        errors = asyncio.create_task(err.read())
        try:
            while True:
                hlen, dlen = HEAD.unpack(await out.readexactly(HEAD.size))
                m = json.loads(await out.readexactly(hlen))
                data = await out.readexactly(dlen) if dlen else b""
                self._on_message(sb, m, data)
        except (asyncio.IncompleteReadError, ValueError):
            pass
        code = await sb.proc.wait()
        text = (await errors).decode("utf-8", "replace").strip()
        if sb.ready is not None and not sb.ready.done():
            sb.ready.set_exception(ApiError(
                500, "RemoteError",
                f"Sandbox {sb.id} failed to start (exit {code}): {text[-2000:] or 'no output'}"))
        elif text and sb.status == "running":
            log.warning("sandbox %s: %s", sb.id, text[-2000:])
        if sb.status == "running":
            oom = sb.group is not None and sb.group.oom_killed()
            await self._finish(sb, "terminated" if oom else "failed", KILLED)

    def _on_message(self, sb: Running, m: dict[str, Any], data: bytes) -> None:
        t = m.get("t")
        if t == "ready":
            if sb.ready is not None and not sb.ready.done():
                sb.ready.set_result(None)
        elif t == "out":
            e = sb.execs.get(m["id"])
            if e is not None:
                e.add(int(m["fd"]), data)
        elif t == "exit":
            e = sb.execs.get(m["id"])
            if e is not None:
                e.finish(int(m["code"]))
            sb.last_active = time.monotonic()
            if m["id"] == MAIN:
                code = int(m["code"])
                self._spawn(sb, self.terminate(sb, "finished", KILLED if code < 0 else code))
        elif t == "fs":
            fut = sb.requests.pop(m["id"], None)
            if fut is not None and not fut.done():
                fut.set_result((m, data))

    async def terminate(self, sb: Running, status: str, returncode: int | None = KILLED) -> None:
        if sb.status != "running":
            await sb.done.wait()
            return
        sb.status = status
        sb.returncode = returncode
        if sb.copies and sb.ready is not None and sb.ready.done():
            # gVisor may hold writes in its own page cache: flush them before the commit.
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                await asyncio.wait_for(self.file_op(sb, "sync", "/"), 10)
        for e in sb.execs.values():
            e.finish(-signal.SIGKILL)
        if sb.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sb.proc.pid, signal.SIGKILL)
        if sb.group is not None:
            await asyncio.to_thread(sb.group.kill_all)
        await self._finish(sb, status, returncode)

    async def _finish(self, sb: Running, status: str, returncode: int | None) -> None:
        if sb.done.is_set():
            return
        sb.status, sb.returncode = status, returncode
        await self.tunnels.close(sb.id)
        if sb.proc is not None and sb.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sb.proc.pid, signal.SIGKILL)
            await sb.proc.wait()
        for fut in sb.requests.values():
            if not fut.done():
                fut.set_exception(ApiError(409, "SandboxTerminatedError",
                                           f"Sandbox {sb.id} ended ({status})."))
        for e in sb.execs.values():
            e.finish(-signal.SIGKILL)
        if sb.isolation == isolation.GVISOR:
            proc = await asyncio.create_subprocess_exec(
                "runsc", "--root", str(self.runsc_root), "delete", "--force", sb.id,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        if sb.group is not None:
            await asyncio.to_thread(sb.group.remove)
        if sb.link is not None:
            await asyncio.to_thread(sandbox_net.remove, sb.link)
        await sandbox_volumes.commit_all(self.cp, sb.copies, sb.id)
        await asyncio.to_thread(shutil.rmtree, sb.base, True)
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
                if (sb.status == "running" and idle and sb.ready is not None and sb.ready.done()
                        and not sb.busy() and now - sb.last_active > idle):
                    self._spawn(sb, self.terminate(sb, "timeout"))

    # ---- commands and files -----------------------------------------------------------------

    def exec(self, sb: Running, args: list[str], env: dict[str, str], workdir: str | None,
             timeout: float | None, exec_id: str | None = None, pty: bool = False,
             size: list[int] | None = None) -> Exec:
        """Start a command; with pty=True on a terminal of its own, of size (rows, columns)
        (stdout and stderr then arrive together, as stdout)."""
        if not args or not all(isinstance(a, str) for a in args):
            raise invalid("exec needs a command: one or more strings.")
        e = Exec(exec_id or sb.next_id(ids.EXEC))
        sb.execs[e.id] = e
        # The sandbox's own env goes with each command: a warm sandbox booted without it.
        sb.send({"t": "exec", "id": e.id, "args": args, "env": {**sb.spec.env, **env},
                 "cwd": workdir or sb.spec.workdir, "pty": pty, "size": size})
        if timeout:
            e.timer = asyncio.get_running_loop().call_later(
                timeout, lambda: self.signal(sb, e.id, signal.SIGKILL))
        return e

    def signal(self, sb: Running, exec_id: str, sig: int) -> None:
        with contextlib.suppress(ApiError):
            sb.send({"t": "signal", "id": exec_id, "sig": int(sig)})

    def stdin(self, sb: Running, exec_id: str, data: bytes, eof: bool) -> None:
        if exec_id not in sb.execs:
            raise ApiError(404, "NotFoundError", f"No command {exec_id} in sandbox {sb.id}.")
        sb.send({"t": "stdin", "id": exec_id, "eof": eof}, data)

    async def file_op(self, sb: Running, op: str, path: str, data: bytes = b"",
                      **options: Any) -> tuple[Any, bytes]:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise invalid(f"{path!r} is not an absolute path inside the sandbox.")
        rid = sb.next_id(ids.FS_REQUEST)
        fut: asyncio.Future[tuple[dict[str, Any], bytes]] = (
            asyncio.get_running_loop().create_future())
        sb.requests[rid] = fut
        sb.send({"t": "fs", "id": rid, "op": op, "path": path, **options}, data)
        m, out = await fut
        if "error" in m:
            kind = m["error"]
            status = 404 if kind == "FileNotFoundError" else 409
            raise ApiError(status, kind, m.get("message", kind))
        return m.get("result"), out

    async def snapshot(self, sb: Running) -> list[str]:
        """Copy the sandbox's writes into a new layer; returns the image's layers, newest
        first (the new one over the layers the sandbox started from)."""
        await self.file_op(sb, "sync", "/")
        layer = ids.new_snapshot_layer_id()
        await asyncio.to_thread(self._copy_layer, sb, self.images / layer)
        return [layer, *sb.spec.layers]

    def _copy_layer(self, sb: Running, dest: Path) -> None:
        tmp = dest.with_name(dest.name + ".part")
        (tmp / "root").mkdir(parents=True)
        base = sb.root.base
        subprocess.run(["cp", "-a", str(base / "upper"), str(tmp / "upper")], check=True)
        mounted = set(sb.root.mounted_dirs()) | {"proc", "sys", "dev", "lost+found"}
        for entry in sb.root.rootfs.iterdir():
            if entry.name in mounted:
                continue
            host = Path("/") / entry.name
            if entry.is_symlink() and host.is_symlink():
                continue
            subprocess.run(["cp", "-a", str(entry), str(tmp / "root" / entry.name)], check=True)
        tmp.rename(dest)
