"""The init process of a sandbox: runs the commands the control plane asks for and reports
their output, and does file operations as the sandbox sees its file system.

It talks to the control plane over its own stdin and stdout only, in frames of
(4-byte header length, 4-byte data length, JSON header, raw data), so it works the same under
gVisor and bubblewrap and needs no network. It is run by the sandbox's own interpreter with
`-I -S`: standard library only, nothing of firebox imported. It imports as little as it can,
as every module costs a sandbox's cold start dearly under gVisor (asyncio alone adds about a
second there), so it is one selectors loop over plain file descriptors.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import struct

HEAD = struct.Struct(">II")
# The kinds of message, under the header's "t". The control plane sends EXEC, STDIN, SIGNAL,
# RESIZE (a terminal's new size) and FS (a file operation); the agent sends READY, OUT (a chunk
# of a command's output), EXIT and FS (the operation's answer).
EXEC, STDIN, SIGNAL, FS, READY, OUT, EXIT = "exec", "stdin", "signal", "fs", "ready", "out", "exit"
RESIZE = "resize"
CHUNK = 65536
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def frame(header: dict, data: bytes = b"") -> bytes:
    """One frame of the agent's protocol, either way: header lengths, JSON header, data."""
    h = json.dumps(header).encode()
    return HEAD.pack(len(h), len(data)) + h + data


class Command:
    """One running command: its process, the pipes (or terminal) to it, and what is owed."""

    def __init__(self, eid: str, pid: int, stdin: int, outputs: dict[int, int],
                 terminal: bool) -> None:
        self.id = eid
        self.pid = pid
        self.stdin: int | None = stdin  # our end of its input
        self.pending = bytearray()  # input not yet taken by the command
        self.eof = False  # close its input once pending is written
        self.outputs = outputs  # our read end -> 1 (stdout) or 2 (stderr)
        self.terminal = terminal
        self.code: int | None = None


class Agent:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.commands: dict[str, Command] = {}
        self.by_pid: dict[int, Command] = {}
        self.inbox = bytearray()
        os.set_blocking(0, False)
        self.sel.register(0, READ, self._control)
        # SIGCHLD wakes the loop through this pipe; the handler itself does nothing.
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.wake_r, READ, self._reap)
        self.running = True

    def send(self, header: dict, data: bytes = b"") -> None:
        left = memoryview(frame(header, data))
        while left:  # blocking: the control plane always reads
            left = left[os.write(1, left):]

    def run(self) -> None:
        self.send({"t": READY, "pid": os.getpid()})
        while self.running:
            for key, mask in self.sel.select():
                key.data(key.fd, mask)

    # ---- the control plane's messages --------------------------------------------------------

    def _control(self, fd: int, mask: int) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.running = False  # the control plane went away: the sandbox ends
            return
        self.inbox += data
        while len(self.inbox) >= HEAD.size:
            hlen, dlen = HEAD.unpack_from(self.inbox)
            end = HEAD.size + hlen + dlen
            if len(self.inbox) < end:
                return
            m = json.loads(bytes(self.inbox[HEAD.size:HEAD.size + hlen]))
            payload = bytes(self.inbox[HEAD.size + hlen:end])
            del self.inbox[:end]
            t = m["t"]
            if t == EXEC:
                self.exec(m)
            elif t == STDIN:
                self.stdin(m, payload)
            elif t == SIGNAL:
                self.signal(m)
            elif t == RESIZE:
                self.resize(m)
            elif t == FS:
                self.fs(m, payload)

    def exec(self, m: dict) -> None:
        eid, args = m["id"], m["args"]
        env = dict(os.environ)
        env.update(m.get("env") or {})
        terminal = bool(m.get("pty"))
        slave = -1
        if terminal:
            import fcntl
            import termios

            env.setdefault("TERM", "xterm-256color")
            master, slave = os.openpty()
            rows, cols = m.get("size") or (24, 80)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            child_fds = (slave, slave, slave)
            ours = {master: 1}
            stdin = os.dup(master)  # written separately from the reads of master
            ends = [slave]
        else:
            in_r, stdin = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            child_fds = (in_r, out_w, err_w)
            ours = {out_r: 1, err_r: 2}
            ends = [in_r, out_w, err_w]
        try:
            pid = _spawn(args, env, m.get("cwd"), child_fds,
                         os.ttyname(slave) if terminal else None)
        except OSError as exc:
            for fd in [*ends, *ours, stdin]:
                os.close(fd)
            self.send({"t": OUT, "id": eid, "fd": 2},
                      f"{args[0]}: {exc.strerror or exc}\n".encode())
            self.send({"t": EXIT, "id": eid,
                       "code": 127 if isinstance(exc, FileNotFoundError) else 126})
            return
        for fd in ends:
            os.close(fd)
        cmd = Command(eid, pid, stdin, ours, terminal)
        self.commands[eid] = cmd
        self.by_pid[pid] = cmd
        os.set_blocking(stdin, False)
        for fd in ours:
            os.set_blocking(fd, False)
            self.sel.register(fd, READ, self._output)

    def stdin(self, m: dict, data: bytes) -> None:
        cmd = self.commands.get(m["id"])
        if cmd is None or cmd.stdin is None or cmd.eof:
            return
        cmd.pending += data
        if m.get("eof"):
            if cmd.terminal:
                cmd.pending += b"\x04"  # end of input, as a terminal says it
            else:
                cmd.eof = True
        self._feed(cmd)

    def _feed(self, cmd: Command) -> None:
        """Write what the command will take now; the rest waits for its input to drain."""
        fd = cmd.stdin
        if fd is None:
            return
        try:
            while cmd.pending:
                del cmd.pending[:os.write(fd, cmd.pending)]
        except BlockingIOError:
            pass
        except OSError:  # it closed its input: what it did not read is dropped
            cmd.pending.clear()
            cmd.eof = True
        registered = fd in self.sel.get_map()
        if cmd.pending and not registered:
            self.sel.register(fd, WRITE, lambda _fd, _mask: self._feed(cmd))
        elif not cmd.pending:
            if registered:
                self.sel.unregister(fd)
            if cmd.eof:
                os.close(fd)
                cmd.stdin = None

    def signal(self, m: dict) -> None:
        cmd = self.commands.get(m["id"])
        if cmd is not None and cmd.code is None:
            try:
                os.killpg(cmd.pid, int(m.get("sig", signal.SIGKILL)))
            except ProcessLookupError:
                pass

    def resize(self, m: dict) -> None:
        """Give a command's terminal its new (rows, columns); the kernel tells the command."""
        cmd = self.commands.get(m["id"])
        if cmd is None or not cmd.terminal or cmd.stdin is None:
            return
        import fcntl
        import termios

        rows, cols = m["size"]
        try:
            fcntl.ioctl(cmd.stdin, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except OSError:
            pass

    def fs(self, m: dict, data: bytes) -> None:
        try:
            result, out = file_op(m["op"], m["path"], m, data)
        except OSError as exc:
            self.send({"t": FS, "id": m["id"], "error": type(exc).__name__,
                       "message": f"{exc.strerror or exc}: {m['path']}"})
            return
        self.send({"t": FS, "id": m["id"], "result": result}, out)

    # ---- the commands' output and ends ---------------------------------------------------

    def _output(self, fd: int, mask: int) -> None:
        cmd = next(c for c in self.commands.values() if fd in c.outputs)
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the terminal's last user has gone
            data = b""
        if data:
            self.send({"t": OUT, "id": cmd.id, "fd": cmd.outputs[fd]}, data)
            return
        self.sel.unregister(fd)
        os.close(fd)
        del cmd.outputs[fd]
        self._maybe_done(cmd)

    def _reap(self, fd: int, mask: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cmd = self.by_pid.pop(pid, None)
            if cmd is None:
                continue  # an orphan that re-parented to us, the sandbox's init
            cmd.code = os.waitstatus_to_exitcode(status)
            if cmd.terminal:
                # gVisor never reports the end of a terminal whose last user has gone (Linux
                # says EIO): once its command has exited, take what it holds and close it.
                for master in list(cmd.outputs):
                    self._drain(cmd, master)
            self._maybe_done(cmd)

    def _drain(self, cmd: Command, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                break
            if not data:
                break
            self.send({"t": OUT, "id": cmd.id, "fd": cmd.outputs[fd]}, data)
        self.sel.unregister(fd)
        os.close(fd)
        del cmd.outputs[fd]

    def _maybe_done(self, cmd: Command) -> None:
        """A command is over once it has exited and all its output is read."""
        if cmd.code is None or cmd.outputs:
            return
        if cmd.stdin is not None:
            if cmd.stdin in self.sel.get_map():
                self.sel.unregister(cmd.stdin)
            os.close(cmd.stdin)
            cmd.stdin = None
        del self.commands[cmd.id]
        self.send({"t": EXIT, "id": cmd.id, "code": cmd.code})


def _spawn(args: list, env: dict, cwd: str | None, stdio: tuple,
           terminal: str | None) -> int:
    """Start a command as a session leader on the given stdio (or on the terminal at that
    path, which then becomes its controlling one) with posix_spawn, which vforks: a fork of
    this process costs tens of ms under gVisor."""
    path = _which(args[0], env.get("PATH") or os.defpath)
    if terminal:
        actions = [(os.POSIX_SPAWN_OPEN, 0, terminal, os.O_RDWR, 0),
                   (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]
    else:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    os.chdir(cwd or "/")  # the child starts where this process is; one thread, so no race
    try:
        return os.posix_spawn(path, args, env, file_actions=actions, setsid=True,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD))
    finally:
        os.chdir("/")


def _which(name: str, search: str) -> str:
    if "/" in name:
        return name
    for d in search.split(os.pathsep):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(2, "No such file or directory")


def file_op(op: str, path: str, m: dict, data: bytes) -> tuple[object, bytes]:
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
                import shutil

                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
        return None, b""
    if op == "stat":
        import stat

        st = os.lstat(path)
        kind = ("directory" if stat.S_ISDIR(st.st_mode) else
                "symlink" if stat.S_ISLNK(st.st_mode) else "file")
        return {"size": st.st_size, "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime,
                "type": kind}, b""
    if op == "sync":
        os.sync()
        return None, b""
    raise OSError(22, f"unknown file operation {op!r}")


if __name__ == "__main__":
    Agent().run()
