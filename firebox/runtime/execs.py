"""Commands exec'd into this container (`firebox container exec`, `firebox shell`), run by the
agent that runs a sandbox's commands (backends/sandbox_agent.py: the standard library only),
started beside the user's code on the first one: so each command has the container's walls,
root, mounts, volumes and environment, under every isolation mode."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..wire import messages

# The agent is a script, run by path: the runtime imports nothing of the backends.
AGENT = Path(__file__).resolve().parent.parent / "backends" / "sandbox_agent.py"
HEAD = struct.Struct(">II")  # the agent's frames: header length, data length, JSON, data
KILLED = -signal.SIGKILL  # the code of a command whose agent went away


def _frame(header: dict[str, Any], data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return HEAD.pack(len(h), len(data)) + h + data


class Execs:
    """The agent and the commands it runs; messages from the control plane are handled in
    order, the agent's frames are relayed back as they come."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.send = send
        self.agent: asyncio.subprocess.Process | None = None
        self.running: set[str] = set()
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.relay: asyncio.Task[None] | None = None

    def handle(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(message)
        if self.worker is None:
            self.worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while True:
            m = await self.inbox.get()
            kind, eid = m[messages.TAG], str(m["id"])
            if kind == messages.EXEC:
                await self._start(eid, m)
            elif eid in self.running and kind == messages.EXEC_STDIN:
                await self._write({"t": "stdin", "id": eid, "eof": bool(m["eof"])},
                                  bytes(m["data"]))
            elif eid in self.running and kind == messages.EXEC_SIGNAL:
                await self._write({"t": "signal", "id": eid, "sig": int(m["sig"])})
            elif eid in self.running and kind == messages.EXEC_RESIZE:
                await self._write({"t": "resize", "id": eid,
                                   "size": [int(n) for n in m["size"]][:2]})

    async def _start(self, eid: str, m: dict[str, Any]) -> None:
        if self.agent is None or self.agent.returncode is not None:
            try:
                self.agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", str(AGENT), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                await self.send(messages.exec_output(
                    eid, 2, f"firebox: cannot run commands in this container: {exc}\n".encode()))
                await self.send(messages.exec_exit(eid, 126))
                return
            self.relay = asyncio.create_task(self._relay(self.agent))
        self.running.add(eid)
        # Where the user's code runs (the image's workdir, or its code), unless asked otherwise.
        await self._write({"t": "exec", "id": eid, "args": [str(a) for a in m["args"]],
                           "cwd": m.get("cwd") or os.getcwd(), "pty": bool(m.get("pty")),
                           "size": m.get("size")})

    async def _write(self, header: dict[str, Any], data: bytes = b"") -> None:
        assert self.agent is not None and self.agent.stdin is not None
        with contextlib.suppress(ConnectionError):  # it has gone: _relay reports the ends
            self.agent.stdin.write(_frame(header, data))
            await self.agent.stdin.drain()

    async def _relay(self, agent: asyncio.subprocess.Process) -> None:
        assert agent.stdout is not None
        try:
            while True:
                hlen, dlen = HEAD.unpack(await agent.stdout.readexactly(HEAD.size))
                header = json.loads(await agent.stdout.readexactly(hlen))
                data = await agent.stdout.readexactly(dlen)
                if header["t"] == "out":
                    await self.send(messages.exec_output(header["id"], int(header["fd"]), data))
                elif header["t"] == "exit":
                    self.running.discard(header["id"])
                    await self.send(messages.exec_exit(header["id"], int(header["code"])))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        for eid in sorted(self.running):  # the agent died with them
            self.running.discard(eid)
            with contextlib.suppress(Exception):
                await self.send(messages.exec_exit(eid, KILLED))

    async def close(self) -> None:
        """The container is stopping: its commands end with it."""
        if self.worker is not None:
            self.worker.cancel()
        agent = self.agent
        if agent is None or agent.returncode is not None:
            return
        if agent.stdin is not None:
            for eid in list(self.running):
                agent.stdin.write(_frame({"t": "signal", "id": eid, "sig": signal.SIGKILL}))
            with contextlib.suppress(ConnectionError):
                await agent.stdin.drain()
            agent.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent.wait(), 2)
        if agent.returncode is None:
            agent.kill()
