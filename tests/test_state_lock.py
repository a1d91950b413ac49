"""One server per state directory: a second `firebox server` on a state directory in use exits
with one line naming the running one, and leaves its client config, socket and calls alone."""

from __future__ import annotations

import subprocess
import sys

import httpx
from conftest import ServerProcess, free_port


def test_a_second_server_on_the_same_state_dir_exits_and_changes_nothing(own_server):
    config = own_server.config_dir / "config.toml"
    socket_path = own_server.state_dir / "server.sock"
    config_before = config.read_bytes(), config.stat().st_mtime_ns
    socket_before = socket_path.stat().st_ino

    second = subprocess.run(
        [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(free_port()),
         "--state-dir", str(own_server.state_dir)],
        env=own_server.env(), capture_output=True, text=True, timeout=30,
    )

    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {own_server.proc.pid}" in lines[0] and own_server.url in lines[0]
    assert str(own_server.state_dir) in lines[0] and "--state-dir" in lines[0]
    assert (config.read_bytes(), config.stat().st_mtime_ns) == config_before
    assert socket_path.stat().st_ino == socket_before
    # The first server still answers with the token it wrote.
    response = httpx.get(own_server.url + "/v1/apps",
                         headers={"authorization": f"Bearer {own_server.token}"}, timeout=10)
    assert response.status_code == 200


def test_the_state_dir_is_free_again_once_its_server_is_gone(tmp_path):
    first = ServerProcess(tmp_path)
    first.start()
    first.kill()  # no clean-up runs: the kernel lets go of the lock
    second = ServerProcess(tmp_path)
    try:
        second.start()
        assert httpx.get(second.url + "/health", timeout=10).status_code == 200
    finally:
        second.stop()


def test_embedded_servers_hold_state_dirs_of_their_own(tmp_path, monkeypatch):
    from firebox.local import EmbeddedServer

    monkeypatch.setenv("FIREBOX_CONFIG_DIR", str(tmp_path))
    one, two = EmbeddedServer().start(), EmbeddedServer().start()
    try:
        assert one.state_dir != two.state_dir
        for embedded in (one, two):
            assert httpx.get(embedded.url + "/health", timeout=10).status_code == 200
        # ... but one certificate authority for tunnels, where the client config lives, so a
        # user trusts every `firebox run`'s tunnels with one file; their containers trust it.
        ca = (tmp_path / "tls" / "embedded" / "ca.pem").read_bytes()
        for embedded in (one, two):
            assert (embedded.state_dir / "ca-bundle.pem").read_bytes().endswith(ca)
    finally:
        one.stop()
        two.stop()
