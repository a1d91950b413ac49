"""The local backend: each container is a child process of the control plane on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cgroups, gpus, isolation
from .base import Launch, OnExit, OnOutput, describe_exit

log = logging.getLogger("firebox.backends.local")


class LocalBackend:
    def __init__(self, workdir: Path, on_output: OnOutput, on_exit: OnExit, *,
                 isolation_mode: str | None = None, hidden: Sequence[Path] = ()) -> None:
        self.workdir = workdir
        self.on_output = on_output
        self.on_exit = on_exit
        self.isolation = isolation.check_mode(isolation_mode or isolation.default_mode())
        # Never visible inside a container: the state directory (database, blobs, the other
        # containers' directories) and the client config with its token.
        self.hidden = [workdir, *hidden]
        self.cgroups = cgroups.available()
        if not self.cgroups:
            log.warning("cgroup v1 is not writable here: containers run without cpu, memory "
                        "and process limits")
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.groups: dict[str, cgroups.Cgroup] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        workdir.mkdir(parents=True, exist_ok=True)

    async def start(self, launch: Launch) -> None:
        mode = isolation.check_mode(launch.isolation or self.isolation)
        root = self.workdir / launch.container_id
        root.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
        env.update(launch.env)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "FIREBOX_CONTAINER_ROOT": str(root),
                "FIREBOX_ISOLATION": mode,
                "CUDA_VISIBLE_DEVICES": ",".join(map(str, launch.gpus)),
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # the order nvidia-smi and NVML number them
                "FIREBOX_PARENT_PID": str(os.getpid()),
            }
        )
        sandbox = isolation.Sandbox(
            container_id=launch.container_id,
            root=root,
            hidden=self.hidden,
            devices=gpus.device_nodes(launch.gpus),
            scratch=self.workdir.parent / "bundles" / launch.container_id,
            runsc_root=self.workdir.parent / "runsc",
        )
        if mode != isolation.PROCESS:
            # Inside, the runtime's parent is the sandbox's init, which dies with us
            # (--die-with-parent), not this process: the runtime must not check for it.
            sandbox.extra += ["--unsetenv", "FIREBOX_PARENT_PID"]
        argv = isolation.launcher(mode, [sys.executable, "-m", "firebox.runtime"], sandbox, env)
        group = None
        if self.cgroups:
            limits = cgroups.Limits(launch.cpu, launch.cpu_limit, launch.memory_mb,
                                    launch.memory_limit_mb)
            group = await asyncio.to_thread(cgroups.Cgroup.create, launch.container_id, limits)
            self.groups[launch.container_id] = group
            argv = isolation.in_cgroup(argv, group.procs_files)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=root,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except BaseException:
            self.groups.pop(launch.container_id, None)
            if group is not None:
                await asyncio.to_thread(group.remove)
            shutil.rmtree(root, ignore_errors=True)
            raise
        self.procs[launch.container_id] = proc
        task = asyncio.create_task(self._watch(launch, mode, proc, sandbox))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self, launch: Launch, mode: str, proc: asyncio.subprocess.Process,
                     sandbox: isolation.Sandbox) -> None:
        cid = launch.container_id
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(
            self._pump(cid, "stdout", proc.stdout), self._pump(cid, "stderr", proc.stderr)
        )
        code = await proc.wait()
        if mode != isolation.PROCESS and code > 128:
            code = -(code - 128)  # bwrap and runsc report a signal as 128 + its number
        self.procs.pop(cid, None)
        cause = describe_exit(code)
        group = self.groups.pop(cid, None)
        if group is not None:
            if group.oom_killed() and launch.memory_limit_mb:
                cause = (f"was killed for using more than its {launch.memory_limit_mb} MiB "
                         "memory limit")
            await asyncio.to_thread(group.remove)
        if mode == isolation.GVISOR:
            await self._forget_gvisor(sandbox)
        shutil.rmtree(sandbox.root, ignore_errors=True)
        try:
            self.on_exit(cid, code, cause)
        except Exception:
            log.exception("exit handler failed for %s", cid)

    async def _forget_gvisor(self, sandbox: isolation.Sandbox) -> None:
        proc = await asyncio.create_subprocess_exec(
            "runsc", "--root", str(sandbox.runsc_root), "delete", "--force",
            sandbox.container_id, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        if sandbox.scratch is not None:
            shutil.rmtree(sandbox.scratch, ignore_errors=True)

    async def _pump(self, cid: str, stream: str, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                line = await reader.read(65536)
            if not line:
                return
            self.on_output(cid, stream, line.decode("utf-8", "replace").rstrip("\n"))

    async def kill(self, container_id: str) -> None:
        proc = self.procs.get(container_id)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        group = self.groups.get(container_id)
        if group is not None:  # processes that left the session (gVisor's sandbox, daemons)
            await asyncio.to_thread(group.kill_all)

    async def close(self) -> None:
        for cid in list(self.procs):
            await self.kill(cid)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
