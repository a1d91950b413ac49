"""Helpers for tests that watch real processes and containers.

Containers may run in their own mount and pid namespaces, so they cannot write to the test's
files and their os.getpid() means nothing here. They report to a Recorder over loopback HTTP
instead, naming themselves by FIREBOX_CONTAINER_ID, and tests find their processes in /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _environ(entry: Path) -> dict[str, str]:
    raw = (entry / "environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cgroup_name(entry: Path) -> str | None:
    """The container a process's cgroup names: a standby runtime that took on a container got
    its id by stdin, so only its cgroup (renamed to the container id) tells."""
    try:
        for line in (entry / "cgroup").read_text().splitlines():
            path = line.split(":", 2)[-1]
            if "/firebox/" in path:
                return path.rsplit("/", 1)[-1]
    except OSError:
        pass
    return None


def runtime_pids(server_url: str | None = None, **env: str) -> list[int]:
    """Live processes of containers (`firebox.runtime` and its launchers), optionally only those
    of one server and with environment variables that start with the given values."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"firebox.runtime" not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
            environ = _environ(entry)
        except OSError:
            continue
        if "FIREBOX_CONTAINER_ID" not in environ and _cgroup_name(entry):
            environ["FIREBOX_CONTAINER_ID"] = _cgroup_name(entry) or ""
        if not pid_alive(int(entry.name)):
            continue
        if server_url and environ.get("FIREBOX_SERVER_URL") != server_url:
            continue
        if any(not environ.get(k, "\0").startswith(v) for k, v in env.items()):
            continue
        found.append(int(entry.name))
    return found


def eventually(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    """The first truthy value of check() within timeout seconds, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def use_server(monkeypatch, srv) -> None:
    """Point this test's SDK calls at srv."""
    monkeypatch.setenv("FIREBOX_SERVER_URL", srv.url)
    monkeypatch.setenv("FIREBOX_TOKEN", srv.token)


class Recorder:
    """A loopback HTTP endpoint where functions note what they did: POST /<topic> with a text
    body appends (arrival time, text) to that topic and answers how many entries it now has."""

    def __init__(self) -> None:
        self.topics: dict[str, list[tuple[float, str]]] = {}
        lock = threading.Lock()
        topics = self.topics

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                text = self.rfile.read(int(self.headers["Content-Length"] or 0)).decode()
                with lock:
                    entries = topics.setdefault(self.path.strip("/"), [])
                    entries.append((time.time(), text))
                    count = len(entries)
                body = str(count).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.netns: str | None = None
        if os.geteuid() == 0 and shutil.which("ip"):
            # Containers have a network namespace of their own and never reach the host's
            # loopback: they reach this endpoint as they would any host outside.
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
            self.server.socket.close()
            self.server.socket = self._outside_listener()
            self.server.server_address = self.server.socket.getsockname()
        else:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _outside_listener(self) -> socket.socket:
        """A listening socket in a network namespace of ours behind a veth (10.252.X.2)."""
        tag = secrets.token_hex(3)
        self.netns, self.veth = f"fbrec-{tag}", f"fbr{tag}"
        octet = secrets.randbelow(250) + 1
        here, there = f"10.252.{octet}.1", f"10.252.{octet}.2"
        for step in (["ip", "netns", "add", self.netns],
                     ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                      "netns", self.netns],
                     ["ip", "addr", "add", f"{here}/24", "dev", self.veth],
                     ["ip", "link", "set", self.veth, "up"],
                     ["ip", "-n", self.netns, "addr", "add", f"{there}/24", "dev", "eth0"],
                     ["ip", "-n", self.netns, "link", "set", "eth0", "up"]):
            subprocess.run(step, check=True, capture_output=True)
        made: list[socket.socket] = []

        def listen() -> None:  # a socket belongs to the namespace its thread was in
            fd = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
            ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000)  # CLONE_NEWNET
            os.close(fd)
            sock = socket.socket()
            sock.bind((there, 0))
            sock.listen(64)
            made.append(sock)

        thread = threading.Thread(target=listen)
        thread.start()
        thread.join()
        return made[0]

    def topic(self, name: str) -> str:
        """The URL a function posts to for this topic."""
        return f"{self.url}/{name}"

    def texts(self, name: str) -> list[str]:
        return [text for _, text in self.topics.get(name, [])]

    def times(self, name: str) -> list[float]:
        return [t for t, _ in self.topics.get(name, [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.netns is not None:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


# ---- hosts to reach, or not ----------------------------------------------------------------

TEST_HOST_PORT = 8765
_TEST_HOST = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {TEST_HOST_PORT}))\n"
    "s.listen()\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall(b'hello from the test host')\n"
    "    c.close()\n"
)


def greeter(host: str, port: int, greeting: bytes) -> socket.socket:
    """A TCP service on host:port (0: any free port) that sends greeting to each client and
    hangs up; close the returned socket to stop it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            c.sendall(greeting)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


@contextlib.contextmanager
def outside_host(subnet: str) -> Iterator[tuple[str, str]]:
    """A host of our own to send traffic to, never off this machine: a network namespace
    behind a veth, at <subnet>.N.2 in a /24, serving 'hello from the test host' on
    TEST_HOST_PORT. Yields (its address, this host's own address on the link)."""
    tag = secrets.token_hex(3)
    ns, host_if, peer = f"fbtest-{tag}", f"fbt{tag}", f"fbq{tag}"
    octet = secrets.randbelow(250) + 1
    here, there = f"{subnet}.{octet}.1", f"{subnet}.{octet}.2"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer],
        ["ip", "link", "set", peer, "netns", ns],
        ["ip", "addr", "add", f"{here}/24", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", ns, "addr", "add", f"{there}/24", "dev", peer],
        ["ip", "-n", ns, "link", "set", peer, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    remote = None
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        remote = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _TEST_HOST],
                                  stdout=subprocess.PIPE, text=True)
        assert remote.stdout is not None and remote.stdout.readline().strip() == "ready"
        yield there, here
    finally:
        if remote is not None:
            remote.kill()
            remote.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)

