"""Test fixtures: a real `firebox server` process on a free port with its own state directory."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent

# pytest-xdist's workers run with COLUMNS=80 and LINES=24, which the CLI's tables take as a
# terminal's width and fold long names to; the CLI the tests run prints to pipes, as a user's
# script would see it.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A `firebox server` subprocess that tests can kill and start again on the same state."""

    def __init__(self, root: Path, database_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.extra_env = extra_env or {}
        self.config_dir = root / "config"
        self.state_dir = root / "state"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.log = root / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
        env["FIREBOX_CONFIG_DIR"] = str(self.config_dir)
        if self.database_url:
            env["FIREBOX_DATABASE_URL"] = self.database_url
        return env | self.extra_env

    def start(self) -> None:
        cmd = [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(self.port),
               "--state-dir", str(self.state_dir)]
        self.proc = subprocess.Popen(
            cmd, env=self.env(), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        with open(self.config_dir / "config.toml", "rb") as f:
            self.token = tomllib.load(f)["default"]["token"]  # the profile the server wrote

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(
        self, *args: str, timeout: float = 60, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        env = self.env()
        env.update({"FIREBOX_SERVER_URL": self.url, "FIREBOX_TOKEN": self.token})
        return subprocess.run(
            [sys.executable, "-m", "firebox.cli.main", *args], env=env, capture_output=True,
            text=True, timeout=timeout, cwd=REPO, **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the session; the test process talks to it through FIREBOX_* variables."""
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    srv.start()
    with current(srv):
        yield srv
    srv.stop()


@contextlib.contextmanager
def current(srv: ServerProcess) -> Iterator[ServerProcess]:
    """The test process talks to srv (FIREBOX_SERVER_URL, FIREBOX_TOKEN) until the block ends."""
    old = {k: os.environ.get(k) for k in ("FIREBOX_SERVER_URL", "FIREBOX_TOKEN")}
    os.environ["FIREBOX_SERVER_URL"], os.environ["FIREBOX_TOKEN"] = srv.url, srv.token
    try:
        yield srv
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that kill or restart it."""
    srv = ServerProcess(tmp_path)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on loopback: its URL, and the JSON bodies POSTed to it."""
    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/hook", got
    srv.shutdown()


def proxy_headers(srv: ServerProcess) -> dict[str, str]:
    """The Modal-Key and Modal-Secret of a new proxy token of srv's workspace."""
    made = srv.cli("token", "proxy", "create")
    assert made.returncode == 0, made.stderr
    return dict(re.findall(r"(Modal-Key|Modal-Secret): (\S+)", made.stdout))
