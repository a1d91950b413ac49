"""Sandboxes on this machine: each a process tree under gVisor (or bubblewrap namespaces where
runsc is missing) with a writable overlay root of its own and cgroup limits, whose init is
sandbox_agent, driven in frames over its stdin and stdout. A few default sandboxes are booted
ahead, so that most creates take one instead of waiting for a boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from ..images import layers as images
from ..wire import ids, settings
from . import cgroups, isolation, sandbox_net
from . import sandbox_agent as agent
from .base import SandboxEvents, SandboxFailed, SandboxFileError, SandboxGone, SandboxLaunch
from .sandbox_agent import HEAD, frame

log = logging.getLogger("firebox.sandboxes")

READY_TIMEOUT = 60.0  # a sandbox whose agent has not started by then failed to start
DEFAULT_CPU = 0.25  # cores reserved for a sandbox that asks for none (it may use idle ones)
FileReply = tuple[Any, bytes]


class LocalSandboxProcess:
    """One sandbox's processes here: its walls, cgroup, network and the agent's pipes."""

    def __init__(self, owner: LocalSandboxes, launch: SandboxLaunch) -> None:
        self.owner = owner
        self.id = launch.sandbox_id
        self.isolation = launch.isolation
        self.launch = launch
        self.events: SandboxEvents | None = None
        self.base = owner.dir / self.id
        # A snapshot's layers over those of the image it was made from.
        layers = [*(owner.layers / layer for layer in launch.layers), *launch.image_layers]
        python = images.python_dirs(list(reversed(launch.image_layers)))
        if launch.image_root:
            self.root = isolation.SandboxRoot(
                self.base / "fs", python=python,
                image_root=images.root_layers(list(reversed(launch.image_layers))))
        else:
            self.root = isolation.SandboxRoot(self.base / "fs", layers,
                                              from_host=isolation.SANDBOX_FROM_HOST,
                                              python=python)
        self.walls = isolation.Walls(container_id=self.id, root=self.base, hidden=owner.hidden,
                                       scratch=self.base / "bundle", runsc_root=owner.runsc_root,
                                       volumes=dict(launch.volumes),
                                       ca_bundle=owner.ca_bundle)
        self.proc: asyncio.subprocess.Process | None = None
        self.group: cgroups.Cgroup | None = None
        self.network: sandbox_net.Link | None = None
        self.ready: asyncio.Future[None] | None = None
        self.requests: dict[str, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self.serial = 0
        self.killed = False  # by kill() or remove(): its end is no news to report
        self.removed = False
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str | None:
        return self.network.inner_ip if self.network is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.removed

    # ---- starting ---------------------------------------------------------------------------

    async def boot(self) -> None:
        """Start the agent under the sandbox's walls; return once it says it is ready."""
        launch, owner = self.launch, self.owner
        cgroup = None
        if owner.cgroups:
            limits = cgroups.Limits(cpu=launch.cpu or DEFAULT_CPU, cpu_limit=launch.cpu,
                                    memory_mb=launch.memory_mb, memory_limit_mb=launch.memory_mb)
            self.group = await asyncio.to_thread(cgroups.Cgroup.create, self.id, limits)
            cgroup = f"/{cgroups.PARENT}/{self.id}"
        self.root.masks = await asyncio.to_thread(isolation.sandbox_base, owner.base_layers,
                                                  self.isolation == isolation.GVISOR)
        argv = await asyncio.to_thread(isolation.sandbox_argv, self.isolation, self.walls,
                                       self.root, dict(launch.env), cgroup,
                                       self.network.path if self.network else None)
        if self.group is not None:
            argv = isolation.in_cgroup(argv, self.group.procs_files)
        self.ready = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd=self.base,
            limit=1 << 26,
        )
        task = asyncio.create_task(self._read())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise SandboxFailed(f"Sandbox {self.id} did not start within {READY_TIMEOUT:.0f} s; "
                                "see the server log.") from None

    # ---- the agent's frames -----------------------------------------------------------------

    def _send(self, header: dict[str, Any], data: bytes = b"") -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise SandboxGone(f"Sandbox {self.id} has ended.")
        self.proc.stdin.write(frame(header, data))

    async def _read(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout, proc.stderr
        errors = asyncio.create_task(err.read())
        try:
            while True:
                hlen, dlen = HEAD.unpack(await out.readexactly(HEAD.size))
                m = json.loads(await out.readexactly(hlen))
                data = await out.readexactly(dlen) if dlen else b""
                self._on_message(m, data)
        except (asyncio.IncompleteReadError, ValueError):
            pass
        code = await proc.wait()
        text = (await errors).decode("utf-8", "replace").strip()
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(SandboxFailed(
                f"Sandbox {self.id} failed to start (exit {code}): "
                f"{text[-2000:] or 'no output'}"))
            return
        if self.killed:
            return
        if text:
            log.warning("sandbox %s: %s", self.id, text[-2000:])
        if self.events is not None:
            self.events.sandbox_ended(self.group is not None and self.group.oom_killed())
        else:  # a warm one nobody took
            await self.remove()

    def _on_message(self, m: dict[str, Any], data: bytes) -> None:
        t = m.get("t")
        if t == agent.READY:
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
        elif t == agent.FS:
            fut = self.requests.pop(m["id"], None)
            if fut is not None and not fut.done():
                fut.set_result((m, data))
        elif self.events is None:
            return
        elif t == agent.OUT:
            self.events.exec_output(m["id"], int(m["fd"]), data)
        elif t == agent.EXIT:
            self.events.exec_exited(m["id"], int(m["code"]))

    # ---- commands and files -----------------------------------------------------------------

    def exec(self, exec_id: str, args: list[str], env: dict[str, str], cwd: str | None,
             pty: bool, size: list[int] | None) -> None:
        self._send({"t": agent.EXEC, "id": exec_id, "args": args, "env": env, "cwd": cwd,
                    "pty": pty, "size": size})

    def stdin(self, exec_id: str, data: bytes, eof: bool) -> None:
        self._send({"t": agent.STDIN, "id": exec_id, "eof": eof}, data)

    def signal(self, exec_id: str, sig: int) -> None:
        self._send({"t": agent.SIGNAL, "id": exec_id, "sig": int(sig)})

    def resize(self, exec_id: str, size: list[int]) -> None:
        self._send({"t": agent.RESIZE, "id": exec_id, "size": size})

    def file_op(self, op: str, path: str, data: bytes, options: dict[str, Any]
                ) -> Awaitable[FileReply]:
        self.serial += 1
        rid = f"{ids.FS_REQUEST}{self.serial}"
        self._send({"t": agent.FS, "id": rid, "op": op, "path": path, **options}, data)
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[tuple[dict[str, Any], bytes]] = loop.create_future()
        self.requests[rid] = sent
        return _reply(sent)

    async def snapshot(self, layer_id: str) -> None:
        await asyncio.to_thread(self._copy_layer, self.owner.layers / layer_id)

    def _copy_layer(self, dest: Path) -> None:
        tmp = dest.with_name(dest.name + ".part")
        (tmp / "root").mkdir(parents=True)
        subprocess.run(["cp", "-a", str(self.root.base / "upper"), str(tmp / "upper")],
                       check=True)
        mounted = set(self.root.mounted_dirs()) | {"proc", "sys", "dev", "lost+found",
                                                   Path(isolation.CA_BUNDLE).parts[1],
                                                   Path(images.PY_MOUNT).parts[1]}
        for entry in self.root.rootfs.iterdir():
            if entry.name in mounted:
                continue
            host = Path("/") / entry.name
            if entry.is_symlink() and host.is_symlink():
                continue
            subprocess.run(["cp", "-a", str(entry), str(tmp / "root" / entry.name)], check=True)
        tmp.rename(dest)

    # ---- ending -----------------------------------------------------------------------------

    async def kill(self) -> None:
        self.killed = True
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.group is not None:  # processes that left the session (gVisor's sandbox)
            await asyncio.to_thread(self.group.kill_all)

    async def remove(self) -> None:
        if self.removed:
            return
        self.removed = self.killed = True
        self.owner.live.pop(self.id, None)
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        for fut in self.requests.values():
            if not fut.done():
                fut.set_exception(SandboxGone(f"Sandbox {self.id} ended."))
        if self.isolation == isolation.GVISOR:
            proc = await asyncio.create_subprocess_exec(
                "runsc", "--root", str(self.owner.runsc_root), "delete", "--force", self.id,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        if self.group is not None:
            await asyncio.to_thread(self.group.remove)
        if self.network is not None:
            await asyncio.to_thread(sandbox_net.remove, self.network)
        await asyncio.to_thread(shutil.rmtree, self.base, True)


async def _reply(sent: asyncio.Future[tuple[dict[str, Any], bytes]]) -> FileReply:
    m, out = await sent
    if "error" in m:
        raise SandboxFileError(m["error"], m.get("message", m["error"]))
    return m.get("result"), out


class LocalSandboxes:
    """The sandboxes of this machine, and the default ones booted ahead of create."""

    def __init__(self, state_dir: Path, hidden: Sequence[Path], use_cgroups: bool,
                 ca_bundle: Path | None = None) -> None:
        self.dir = state_dir / "sandboxes"
        self.ca_bundle = ca_bundle  # what its sandboxes trust (isolation.trust_env)
        self.layers = state_dir / "sandbox-layers"
        self.runsc_root = state_dir / "runsc-sandboxes"
        self.base_layers = state_dir / "sandbox-base"  # isolation.sandbox_base
        self.hidden = list(hidden)
        self.cgroups = use_cgroups
        self.live: dict[str, LocalSandboxProcess] = {}  # booting, warm and taken, by sandbox id
        self.pool: list[LocalSandboxProcess] = []  # booted default sandboxes, oldest first
        self.pool_size = max(0, settings.SANDBOX_POOL.get())
        self._filling: asyncio.Task[None] | None = None
        # Cold boots at once: a boot is CPU-bound, so a burst of creates shares the cores better
        # finishing a few at a time than all at the end together.
        self._boots = asyncio.Semaphore(4 * (os.cpu_count() or 2))

    def isolation(self) -> str:
        try:
            return isolation.sandbox_default_mode()
        except isolation.IsolationUnavailable as exc:
            raise SandboxFailed(str(exc)) from None

    def networks(self) -> bool:
        return sandbox_net.available()

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.base_layers, ignore_errors=True)  # made again from the host as it is
        self._refill()

    async def start_sandbox(self, launch: SandboxLaunch, events: SandboxEvents
                            ) -> LocalSandboxProcess:
        sb = self._new(launch)
        sb.events = events
        try:
            if launch.network is not None:
                sb.network = await asyncio.to_thread(sandbox_net.create, launch.network)
            async with self._boots:
                await sb.boot()
        except BaseException:
            await sb.remove()
            raise
        return sb

    def _new(self, launch: SandboxLaunch) -> LocalSandboxProcess:
        sb = LocalSandboxProcess(self, launch)
        self.live[sb.id] = sb
        return sb

    # ---- the warm pool ----------------------------------------------------------------------

    def take_warm(self) -> LocalSandboxProcess | None:
        found = None
        while self.pool and found is None:
            sb = self.pool.pop(0)
            if sb.alive():
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
                mode = self.isolation()
            except SandboxFailed as exc:
                log.warning("no warm sandboxes: %s", exc)
                return
            sb = self._new(SandboxLaunch(ids.new_sandbox_id(), mode))
            try:
                await sb.boot()
            except asyncio.CancelledError:
                await _end(sb)
                raise
            except Exception as exc:  # the next create tries again
                log.warning("a warm sandbox failed to start: %s", exc)
                await _end(sb)
                return
            self.pool.append(sb)

    async def close(self) -> None:
        self.pool_size = 0
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        self.pool = []
        await asyncio.gather(*(_end(sb) for sb in list(self.live.values())),
                             return_exceptions=True)
        if sandbox_net.available():
            await asyncio.to_thread(sandbox_net.shutdown)


async def _end(sb: LocalSandboxProcess) -> None:
    await sb.kill()
    await sb.remove()
