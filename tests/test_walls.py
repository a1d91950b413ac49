"""Containers are walled by default: from a function container (bubblewrap and gVisor) or a
sandbox, the host's secrets are out of sight, the host's loopback and its own addresses are out
of reach, egress reaches the outside (a test host of our own: a network namespace behind a
veth) with the host's IPv4 forwarding off, and a container that set no memory limit is killed
at the default ceiling."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import walls
from helpers import TEST_HOST_PORT, greeter, outside_host

import firebox as modal
from firebox.backends import cgroups, isolation
from firebox.exception import RemoteError

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
GVISOR = shutil.which("runsc") is not None
NETWORK = shutil.which("ip") is not None and shutil.which("nft") is not None
MODES = ["namespaces", pytest.param("gvisor", marks=pytest.mark.skipif(
    not GVISOR, reason="needs gVisor's runsc"))]
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

@pytest.fixture(scope="module")
def forwarding_off() -> Iterator[None]:
    """The host forwards nothing, as a fresh Debian machine (ip_forward=0); put back after."""
    before = IP_FORWARD.read_text().strip()
    if before != "0":
        IP_FORWARD.write_text("0")
    yield
    if before != "0":
        IP_FORWARD.write_text(before)


@pytest.fixture(scope="module")
def outside(forwarding_off) -> Iterator[dict[str, tuple[str, int]]]:
    """A test host in a network namespace of ours (10.251.X.2, serving TCP on 8765), the host's
    own address on that link (10.251.X.1, serving too) and a service on the host's loopback."""
    with outside_host("10.251") as (there, here):
        listeners = [greeter(here, TEST_HOST_PORT, b"hello from the host"),
                     greeter("127.0.0.1", 0, b"hello from the host's loopback")]
        try:
            yield {"outside": (there, TEST_HOST_PORT), "host": (here, TEST_HOST_PORT),
                   "loopback": ("127.0.0.1", listeners[1].getsockname()[1])}
        finally:
            for listener in listeners:
                listener.close()


def runtime_dirs_under(top: str) -> set[str]:
    return {p.relative_to(top).parts[0] for p in isolation.python_paths()
            if p.is_relative_to(top) and p != Path(top)}


@pytest.mark.parametrize("mode", MODES)
def test_a_function_container_sees_no_host_secrets(server, mode):
    with walls.app.run(show_logs=False):
        seen = (walls.look_gvisor if mode == "gvisor" else walls.look).remote()
    assert seen["isolation"] == mode
    assert seen["uid"] != 0  # never root
    assert not seen["shadow"].startswith("read") or seen["shadow"] == "read 0 bytes", seen
    # Of /root, /home and /work only what the runtime imports is there (Python, firebox).
    assert set(seen["root"] or []) <= runtime_dirs_under("/root"), seen
    assert set(seen["home"] or []) <= runtime_dirs_under("/home"), seen
    assert set(seen["work"] or []) <= runtime_dirs_under("/work"), seen
    assert not seen["shared"]


@pytest.mark.skipif(not NETWORK, reason="needs iproute2 and nftables")
@pytest.mark.parametrize("mode", MODES)
def test_a_function_container_reaches_out_but_not_the_host(server, outside, mode):
    server_port = ("127.0.0.1", server.port)
    targets = [outside["outside"], outside["host"], outside["loopback"], server_port,
               ("169.254.169.254", 80)]
    with walls.app.run(show_logs=False):
        seen = (walls.reach_gvisor if mode == "gvisor" else walls.reach).remote(targets)
    there, here, loop = (f"{h}:{p}" for h, p in targets[:3])
    # Egress through the host works, with the host's ip_forward off ...
    assert seen[there] == "connected: hello from the test host", seen
    # ... but nothing on the host itself: not its own addresses, not its loopback services, not
    # the control plane's port (the container's channel is the server's unix socket).
    assert not seen[here].startswith("connected"), seen
    assert not seen[loop].startswith("connected"), seen
    assert not seen[f"127.0.0.1:{server.port}"].startswith("connected"), seen
    assert not seen["169.254.169.254:80"].startswith("connected"), seen
    # The control: from the host the same services answer.
    for host, port in targets[1:3]:
        with socket.create_connection((host, port), timeout=3) as c:
            assert c.recv(100).startswith(b"hello from the host")


@pytest.mark.skipif(not cgroups.available(), reason="needs writable cgroups")
@pytest.mark.parametrize("mode", MODES)
def test_no_memory_limit_given_means_the_default_ceiling(server, mode):
    # memory= is not set: the request is 128 MiB and the limit the default, 1024 MiB.
    with walls.app.run(show_logs=False):
        with pytest.raises(RemoteError, match="more than its 1024 MiB memory limit"):
            (walls.hoard_gvisor if mode == "gvisor" else walls.hoard).remote(1536)


@pytest.fixture(scope="module")
def sandbox_app(server):
    return modal.App.lookup("test-walls-sandboxes", create_if_missing=True)


def test_a_sandbox_sees_no_host_secrets(sandbox_app):
    sb = modal.Sandbox.create(app=sandbox_app)
    try:
        shadow = sb.exec("cat", "/etc/shadow").stdout.read()
        listed = sb.exec("sh", "-c", "ls -A /root /home; test -e /work && echo work; "
                         "test -e /var/lib/postgresql && ls -A /var/lib/postgresql/*/; "
                         "echo end").stdout.read()
    finally:
        sb.terminate()
    users = [line for line in shadow.splitlines() if line]
    assert users and all(line.split(":")[1] in ("*", "!") for line in users), shadow
    # /root holds at most the mount point of the interpreter of the sandbox's agent.
    assert [w for w in listed.split() if w not in runtime_dirs_under("/root")] == [
        "/home:", "/root:", "end"], listed


@pytest.mark.skipif(not GVISOR, reason="needs gVisor's runsc")
def test_ls_and_stat_of_the_root_in_a_gvisor_sandbox(sandbox_app):
    sb = modal.Sandbox.create(app=sandbox_app)
    try:
        assert sb.isolation == "gvisor"
        ls = sb.exec("ls", "/")
        listed, errors = ls.stdout.read(), ls.stderr.read()
        st = sb.exec("stat", "-c", "%F", "/")
        kind = st.stdout.read()
        assert ls.wait() == 0 and st.wait() == 0, errors
    finally:
        sb.terminate()
    assert {"usr", "etc", "tmp"} <= set(listed.split()), errors
    assert kind.strip() == "directory"


def _leftovers(pid: int) -> list[str]:
    names = [n for n in (Path("/var/run/netns").iterdir() if Path("/var/run/netns").exists()
                         else []) if n.name.startswith(f"firebox-{pid}-")]
    tables = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True,
                            text=True).stdout
    return [n.name for n in names] + (["table"] if f"firebox_server_{pid}\n" in tables else [])


@pytest.mark.skipif(not NETWORK, reason="needs iproute2 and nftables")
def test_a_restart_sweeps_what_a_killed_server_left(tmp_path):
    from conftest import ServerProcess
    from helpers import eventually

    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        assert srv.proc is not None
        first = srv.proc.pid
        assert eventually(lambda: len(_leftovers(first)) > 1, timeout=15)  # made ahead
        srv.kill()
        assert _leftovers(first)  # a crash leaves them ...
        srv.start()
        assert _leftovers(first) == []  # ... and the next server sweeps them
        assert srv.proc is not None
        second = srv.proc.pid
    finally:
        srv.stop()
    assert _leftovers(second) == []  # a clean stop leaves nothing
