"""The local backend: each container is a child process of the control plane on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

from .base import Launch, OnExit, OnOutput, describe_exit

log = logging.getLogger("firebox.backends.local")


class LocalBackend:
    def __init__(self, workdir: Path, on_output: OnOutput, on_exit: OnExit) -> None:
        self.workdir = workdir
        self.on_output = on_output
        self.on_exit = on_exit
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        workdir.mkdir(parents=True, exist_ok=True)

    async def start(self, launch: Launch) -> None:
        root = self.workdir / launch.container_id
        root.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
        env.update(launch.env)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "FIREBOX_CONTAINER_ROOT": str(root),
                "FIREBOX_PARENT_PID": str(os.getpid()),
            }
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "firebox.runtime",
            cwd=root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.procs[launch.container_id] = proc
        task = asyncio.create_task(self._watch(launch.container_id, proc, root))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self, cid: str, proc: asyncio.subprocess.Process, root: Path) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(
            self._pump(cid, "stdout", proc.stdout), self._pump(cid, "stderr", proc.stderr)
        )
        code = await proc.wait()
        self.procs.pop(cid, None)
        shutil.rmtree(root, ignore_errors=True)
        try:
            self.on_exit(cid, code, describe_exit(code))
        except Exception:
            log.exception("exit handler failed for %s", cid)

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

    async def close(self) -> None:
        for cid in list(self.procs):
            await self.kill(cid)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
