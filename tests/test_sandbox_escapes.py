"""Untrusted code in a sandbox cannot harm or read the host, the server or other sandboxes.
Each test first shows the thing it protects exists, so it fails if protection is missing."""

import secrets
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

import firebox as modal


@pytest.fixture(scope="module")
def app(server):
    return modal.App.lookup("sandbox-escapes", create_if_missing=True)


@pytest.fixture
def host_marker():
    """A file on the host, in a directory every sandbox sees (read-only) as /var/tmp."""
    path = Path("/var/tmp") / f"firebox-marker-{secrets.token_hex(4)}"
    path.write_text("host data")
    yield path
    path.unlink()


def test_rm_rf_root_leaves_the_host_untouched(app, host_marker):
    sb = modal.Sandbox.create(app=app)
    try:
        assert sb.filesystem.read_text(str(host_marker)) == "host data"  # it sees the file
        # Small directories first so they are surely gone; / itself may take past the timeout.
        p = sb.exec("rm", "-rf", "--no-preserve-root", "/var/tmp", "/etc", "/", timeout=15)
        p.wait()
        assert host_marker.read_text() == "host data"
        assert Path("/usr/bin/env").exists() and Path("/etc/passwd").exists()
        # The sandbox's own view is gone; its agent (already loaded) still answers.
        with pytest.raises(FileNotFoundError):
            sb.filesystem.read_text(str(host_marker))
        with pytest.raises(FileNotFoundError):
            sb.filesystem.read_text("/etc/passwd")
    finally:
        sb.terminate()


def test_fork_bomb_is_contained(app, server):
    sb = modal.Sandbox.create(app=app, memory=256)
    try:
        bomb = sb.exec("python3", "-c", "import os\nwhile True:\n    os.fork()", timeout=8)
        bomb.wait()
    finally:
        sb.terminate()
    # The host still forks and the server still answers.
    assert subprocess.run(["true"]).returncode == 0
    assert httpx.get(server.url + "/health").status_code == 200
    other = modal.Sandbox.create(app=app)
    try:
        assert other.exec("echo", "fine").stdout.read() == "fine\n"
    finally:
        other.terminate()


def test_memory_bomb_hits_the_memory_limit(app, server):
    sb = modal.Sandbox.create(app=app, memory=128)
    p = sb.exec("python3", "-c", "x = bytearray(1024 * 1024 * 1024); x[::4096] = b'1' * "
                "(len(x) // 4096); print('allocated')", timeout=60)
    output = p.stdout.read()
    code = p.wait()
    assert "allocated" not in output
    assert code != 0
    sb.wait(raise_on_termination=False)  # ended: killed with its sandbox, or still up
    assert httpx.get(server.url + "/health").status_code == 200


def test_no_route_to_host_loopback_or_metadata_addresses(app):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    # The service is reachable from the host itself.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    thread.join(2)
    assert len(accepted) == 1
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    probe = (
        "import socket, sys\n"
        "for host in sys.argv[1:]:\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=3).close()\n"
        "        print('connected', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, e)\n"
    )
    for block in (False, True):
        sb = modal.Sandbox.create(app=app, block_network=block)
        try:
            out = sb.exec("python3", "-c", probe, "127.0.0.1", "169.254.169.254",
                          "10.0.2.2").stdout.read()
        finally:
            sb.terminate()
        assert "connected" not in out, out
        assert [line.split()[0] for line in out.splitlines()] == ["refused"] * 3, out
    listener.close()
    thread.join(2)
    assert len(accepted) == 1  # only the host's own connection


def test_server_state_and_client_config_are_hidden(app, server):
    db = server.state_dir / "firebox.db"
    config = server.config_dir / "config.toml"
    assert db.exists() and config.exists()
    sb = modal.Sandbox.create(app=app)
    try:
        for path in (db, config):
            with pytest.raises(FileNotFoundError):
                sb.filesystem.read_bytes(str(path))
            out = sb.exec("cat", str(path)).stderr.read()
            assert "No such file" in out
        home = Path.home() / ".firebox"
        if home.exists():  # the client config dir of whoever runs the tests: not there, or empty
            try:
                assert sb.filesystem.list_files(str(home)) == []
            except FileNotFoundError:
                pass
    finally:
        sb.terminate()


def test_one_sandbox_cannot_read_another(app, server):
    a = modal.Sandbox.create(app=app)
    b = modal.Sandbox.create(app=app)
    try:
        a.exec("sh", "-c", "echo secret-a > /root/secret && echo secret-a > /tmp/secret").wait()
        assert a.filesystem.read_text("/root/secret") == "secret-a\n"
        for path in ("/root/secret", "/tmp/secret"):
            with pytest.raises(FileNotFoundError):
                b.filesystem.read_text(path)
        # a's writable layer lives under the server's state directory, which b cannot see.
        upper = server.state_dir / "sandboxes" / a.object_id / "fs" / "upper" / "root" / "secret"
        assert upper.read_text() == "secret-a\n"
        with pytest.raises(FileNotFoundError):
            b.filesystem.read_text(str(upper))
        ps = b.exec("sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done")
        assert "secret" not in ps.stdout.read()
    finally:
        a.terminate()
        b.terminate()
