"""The init process of a sandbox: runs the commands the control plane asks for and reports
their output, and does file operations as the sandbox sees its file system.

It talks to the control plane over its own stdin and stdout only, in frames of
(4-byte header length, 4-byte data length, JSON header, raw data), so it works the same under
gVisor and bubblewrap and needs no network. It is run by the sandbox's own interpreter with
`-I -S`: standard library only, nothing of firebox imported.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import stat
import struct
import sys
import termios
from typing import Any

HEAD = struct.Struct(">II")
CHUNK = 65536


class Agent:
    def __init__(self, out: asyncio.StreamWriter | Any) -> None:
        self.out = out
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.inputs: dict[str, asyncio.StreamWriter] = {}  # where each command's stdin goes
        self.ptys: set[str] = set()  # commands on a terminal: end of input is ^D, not a close
        self.early: dict[str, list[tuple[dict[str, Any], bytes]]] = {}  # stdin before start

    def send(self, header: dict[str, Any], data: bytes = b"") -> None:
        h = json.dumps(header).encode()
        self.out.write(HEAD.pack(len(h), len(data)) + h + data)

    async def exec(self, m: dict[str, Any]) -> None:
        eid = m["id"]
        env = dict(os.environ)
        env.update(m.get("env") or {})
        master = -1
        try:
            if m.get("pty"):
                env.setdefault("TERM", "xterm-256color")
                master, slave = os.openpty()
                rows, cols = m.get("size") or (24, 80)
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *m["args"], cwd=m.get("cwd") or None, env=env, stdin=slave,
                        stdout=slave, stderr=slave, start_new_session=True,
                        preexec_fn=_take_terminal)
                finally:
                    os.close(slave)
            else:
                proc = await asyncio.create_subprocess_exec(
                    *m["args"], cwd=m.get("cwd") or None, env=env,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True,
                )
        except OSError as exc:
            if master >= 0:
                os.close(master)
            self.send({"t": "out", "id": eid, "fd": 2}, f"{m['args'][0]}: {exc}\n".encode())
            self.send({"t": "exit", "id": eid, "code": 127 if isinstance(
                exc, FileNotFoundError) else 126})
            self.early.pop(eid, None)
            return
        self.procs[eid] = proc
        loop = asyncio.get_running_loop()
        if master >= 0:
            os.set_blocking(master, False)
            loop.add_reader(master, self._terminal_readable, eid, master)
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", buffering=0))
            self.inputs[eid] = asyncio.StreamWriter(transport, protocol, None, loop)
            self.ptys.add(eid)
        else:
            assert proc.stdin is not None
            self.inputs[eid] = proc.stdin
        for early in self.early.pop(eid, []):
            self.stdin(*early)
        if master >= 0:
            # A terminal is read until its command exits, then drained: gVisor never reports
            # the end of a terminal whose last user has gone, as Linux does with EIO.
            code = await proc.wait()
            loop.remove_reader(master)
            while self._terminal_output(eid, master):
                pass
            self.inputs.pop(eid).close()
            self.ptys.discard(eid)
            os.close(master)
        else:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(self.pump(eid, 1, proc.stdout), self.pump(eid, 2, proc.stderr))
            code = await proc.wait()
            self.inputs.pop(eid, None)
        self.procs.pop(eid, None)
        self.send({"t": "exit", "id": eid, "code": code})

    def _terminal_readable(self, eid: str, master: int) -> None:
        try:
            self._terminal_output(eid, master, quiet=False)
        except OSError:  # EIO: its last user has gone (Linux); the exit drains the rest
            asyncio.get_running_loop().remove_reader(master)

    def _terminal_output(self, eid: str, master: int, quiet: bool = True) -> bool:
        """Send what the terminal has; False once it has nothing more for now."""
        try:
            data = os.read(master, CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            if quiet:
                return False
            raise
        if data:
            self.send({"t": "out", "id": eid, "fd": 1}, data)
        return bool(data)

    async def pump(self, eid: str, fd: int, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            self.send({"t": "out", "id": eid, "fd": fd}, data)

    def stdin(self, m: dict[str, Any], data: bytes) -> None:
        """Buffered in order; the control plane bounds how much a client may send at once."""
        if m["id"] in self.early:
            self.early[m["id"]].append((m, data))
            return
        writer = self.inputs.get(m["id"])
        if writer is None or writer.is_closing():
            return
        try:
            if data:
                writer.write(data)
            if m.get("eof"):
                if m["id"] in self.ptys:
                    writer.write(b"\x04")  # end of input, as a terminal says it
                else:
                    writer.close()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def signal(self, m: dict[str, Any]) -> None:
        proc = self.procs.get(m["id"])
        if proc is not None:
            try:
                os.killpg(proc.pid, int(m.get("sig", signal.SIGKILL)))
            except ProcessLookupError:
                pass

    def fs(self, m: dict[str, Any], data: bytes) -> None:
        try:
            result, out = file_op(m["op"], m["path"], m, data)
        except OSError as exc:
            self.send({"t": "fs", "id": m["id"], "error": type(exc).__name__,
                       "message": f"{exc.strerror or exc}: {m['path']}"})
            return
        self.send({"t": "fs", "id": m["id"], "result": result}, out)


def _take_terminal() -> None:
    """In the child, after setsid: make its terminal (stdin) the session's controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def file_op(op: str, path: str, m: dict[str, Any], data: bytes) -> tuple[Any, bytes]:
    if op == "read":
        with open(path, "rb") as f:
            return None, f.read()
    if op == "write":
        with open(path, "ab" if m.get("append") else "wb") as f:
            f.write(data)
        return len(data), b""
    if op == "list":
        return sorted(os.listdir(path)), b""
    if op == "mkdir":
        if m.get("parents"):
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)
        return None, b""
    if op == "remove":
        if os.path.isdir(path) and not os.path.islink(path):
            if m.get("recursive"):
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
        return None, b""
    if op == "stat":
        st = os.lstat(path)
        kind = ("directory" if stat.S_ISDIR(st.st_mode) else
                "symlink" if stat.S_ISLNK(st.st_mode) else "file")
        return {"size": st.st_size, "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime,
                "type": kind}, b""
    if op == "sync":
        os.sync()
        return None, b""
    raise OSError(22, f"unknown file operation {op!r}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    agent = Agent(writer)
    tasks: set[asyncio.Task[None]] = set()
    agent.send({"t": "ready", "pid": os.getpid()})
    while True:
        try:
            head = await reader.readexactly(HEAD.size)
        except asyncio.IncompleteReadError:
            return  # the control plane went away: the sandbox ends
        hlen, dlen = HEAD.unpack(head)
        m = json.loads(await reader.readexactly(hlen))
        data = await reader.readexactly(dlen) if dlen else b""
        t = m["t"]
        if t == "exec":
            # Buffer its stdin from now: the task starts only after the messages already read.
            agent.early[m["id"]] = []
            task = asyncio.ensure_future(agent.exec(m))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif t == "stdin":
            agent.stdin(m, data)
        elif t == "signal":
            agent.signal(m)
        elif t == "fs":
            agent.fs(m, data)


if __name__ == "__main__":
    asyncio.run(main())
