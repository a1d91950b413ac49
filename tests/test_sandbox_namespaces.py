"""Sandboxes under bubblewrap namespaces, the mode where runsc is missing (chosen here with
FIREBOX_SANDBOX_ISOLATION on a server of this module's own): the same verbs, terminals with
^D, tunnels, and the walls."""

import os
import shutil
import ssl
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, current
from helpers import eventually

import firebox as modal

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="needs bubblewrap")


@pytest.fixture(scope="module")
def ns_server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("ns-server"),
                        extra_env={"FIREBOX_SANDBOX_ISOLATION": "namespaces",
                                   "FIREBOX_SANDBOX_POOL": "1"})
    srv.start()
    with current(srv):
        yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sb(ns_server):
    app = modal.App.lookup("sandbox-namespaces", create_if_missing=True)
    sandbox = modal.Sandbox.create(app=app)
    yield sandbox
    sandbox.terminate()


def test_exec_streams_and_exit_code(sb):
    assert sb.isolation == "namespaces"
    p = sb.exec("sh", "-c", 'read x; echo "got $x"; echo oops >&2; exit 3')
    p.stdin.write(b"hello\n")
    p.stdin.write_eof()
    p.stdin.drain()
    assert p.stdout.read() == "got hello\n"
    assert p.stderr.read() == "oops\n"
    assert p.wait() == 3


def test_terminal_ends_input_at_ctrl_d(sb):
    cat = sb.exec("cat", pty=True)
    cat.stdin.write(b"typed\n")
    cat.stdin.write_eof()
    cat.stdin.drain()
    assert cat.wait() == 0
    assert cat.stdout.read().replace("\r\n", "\n") == "typed\ntyped\n"
    tty = sb.exec("sh", "-c", "tty && test -t 0 && test -t 2", pty=True)
    assert tty.wait() == 0 and tty.stdout.read().startswith("/dev/pts/")


def test_walls(sb, ns_server):
    peek = sb.exec("sh", "-c", f"ls -A {ns_server.state_dir} | wc -l")
    assert peek.stdout.read().strip() == "0"  # the server's state is an empty directory
    # Last, as it leaves this sandbox without a shell: its writes go to its own layer.
    wreck = sb.exec("sh", "-c", "rm -rf /usr/bin /etc 2>/dev/null; test -e /usr/bin/python3")
    assert wreck.wait() == 1
    assert Path("/usr/bin/python3").exists() and Path("/etc/passwd").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")),
                    reason="needs root, iproute2 and nftables")
def test_tunnel(ns_server):
    app = modal.App.lookup("sandbox-namespaces", create_if_missing=True)
    sb = modal.Sandbox.create(app=app, encrypted_ports=[8080])
    try:
        assert sb.isolation == "namespaces"
        sb.filesystem.write_text("/tmp/hello.txt", "over a tunnel")
        sb.exec("python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/tmp")
        url = sb.tunnels()[8080].url + "/hello.txt"
        tls = ssl.create_default_context(cafile=str(ns_server.state_dir / "tls" / "ca.pem"))

        def fetch():
            try:
                return httpx.get(url, verify=tls, timeout=5).text
            except httpx.HTTPError:
                return None

        assert eventually(fetch, timeout=30) == "over a tunnel"
    finally:
        sb.terminate()


def test_an_unknown_choice_stops_the_server_with_a_clear_error(tmp_path):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_SANDBOX_ISOLATION": "docker"})
    with pytest.raises(RuntimeError, match="sandboxes run under namespaces or gvisor") as err:
        srv.start()
    assert "Traceback" not in str(err.value)
