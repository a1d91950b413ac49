"""Containers are walls: the escapes in tests/apps/isolation_escapes.py stay contained."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from apps import isolation_escapes as esc

from firebox.backends import cgroups
from firebox.exception import RemoteError

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
CGROUPS = cgroups.available()


def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def healthy(server) -> bool:
    return httpx.get(server.url + "/health", timeout=5).status_code == 200


def host_pids_of(container_id: str) -> list[int]:
    """Host pids of the python runtime of a container (not its bwrap wrappers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        named = f"FIREBOX_CONTAINER_ID={container_id}".encode() in environ
        if not named:  # a standby runtime that took on the container: its cgroup names it
            cgroup = (entry / "cgroup").read_text() if (entry / "cgroup").exists() else ""
            named = f"/firebox/{container_id}\n" in cgroup
        if cmdline[:1] != [b"bwrap"] and b"firebox.runtime" in cmdline and named:
            found.append(int(entry.name))
    return found


def test_default_is_namespaces_with_own_pid_namespace(server):
    with esc.app.run():
        info = esc.whoami.remote()
    assert info["isolation"] == "namespaces"
    assert info["pid"] < 10  # numbered inside its own pid namespace


def test_other_containers_tmp_is_invisible(server):
    with esc.app.run():
        writer = esc.leave_in_tmp.remote("secret.txt", "from another container")
        seen = esc.read_file.remote("/tmp/secret.txt")
        unisolated = esc.read_file_unisolated.remote("/tmp/secret.txt")
        assert esc.whoami.remote()["container_id"] != writer
    assert isinstance(seen, str) and seen.startswith("FileNotFoundError")
    assert not Path("/tmp/secret.txt").exists()  # it never reached the host's /tmp either
    assert isinstance(unisolated, str)  # the control: without isolation the path is the host's
    assert healthy(server)


def test_server_state_and_client_token_are_invisible(server):
    db = server.state_dir / "firebox.db"
    token = server.config_dir / "config.toml"
    assert db.exists() and token.exists()
    with esc.app.run():
        results = {p: esc.read_file.remote(str(p)) for p in (db, token, server.state_dir / "blobs")}
        control = esc.read_file_unisolated.remote(str(token))
    for path, result in results.items():
        assert isinstance(result, str) and result.startswith(
            ("FileNotFoundError", "IsADirectoryError")
        ), (path, result)
    assert server.token.encode() in control  # the control: a plain process reads the token
    assert healthy(server)


def test_cannot_write_under_usr(server):
    target = Path("/usr/firebox-escape")
    with esc.app.run():
        result = esc.write_file.remote(str(target))
    assert "Read-only file system" in result
    assert not target.exists()


def test_cannot_signal_another_containers_process(server):
    with esc.app.run():
        victim = esc.leave_in_tmp.remote("x", "y")  # stays warm, idle, after answering
        pids = host_pids_of(victim)
        assert len(pids) == 1
        result = esc.send_signal.remote(pids[0], signal.SIGKILL)
        server_probe = esc.send_signal.remote(server.proc.pid, 0)
        assert result.startswith("ProcessLookupError")
        assert server_probe.startswith("ProcessLookupError")
        assert host_pids_of(victim) == pids  # still alive, and still serving
        assert esc.leave_in_tmp.remote("x", "z") == victim
    assert healthy(server)


@pytest.mark.skipif(not CGROUPS, reason="needs writable cgroups")
def test_fork_bomb_stops_at_the_pids_limit(server):
    with esc.app.run():
        result = esc.fork_bomb.remote(3 * cgroups.DEFAULT_PIDS_MAX)
        assert result["error"] == errno.EAGAIN
        assert 10 < result["started"] < cgroups.DEFAULT_PIDS_MAX
        assert esc.whoami.remote()["isolation"] == "namespaces"  # others still start
    assert healthy(server)
    # The single-use container is gone, and its processes and cgroup with it.
    group = cgroups.group_dir(result["container_id"], "pids")
    assert eventually(lambda: not group.exists(), timeout=15)


@pytest.mark.skipif(not CGROUPS, reason="needs writable cgroups")
def test_memory_bomb_is_killed_and_the_error_names_the_limit(server):
    with esc.app.run():
        with pytest.raises(RemoteError, match="more than its 256 MiB memory limit"):
            esc.memory_bomb.remote()
        assert esc.whoami.remote()["isolation"] == "namespaces"
    assert healthy(server)


@pytest.mark.skipif(not CGROUPS or not shutil.which("runsc"), reason="needs cgroups and runsc")
def test_memory_limit_holds_under_gvisor_too(server):
    # runsc moves its processes out of the cgroup they start in unless told to stay.
    with esc.app.run():
        with pytest.raises(RemoteError, match="more than its 256 MiB memory limit"):
            esc.memory_bomb_in_gvisor.remote()
    assert healthy(server)


@pytest.mark.skipif(not CGROUPS, reason="needs writable cgroups")
def test_cpu_and_memory_limits_are_set_on_the_containers_cgroup(server):
    with esc.app.run():
        cid = esc.limited.remote()
        cpu, memory = cgroups.group_dir(cid, "cpu"), cgroups.group_dir(cid, "memory")
        if cgroups.version() == 2:
            assert (cpu / "cpu.max").read_text().split() == ["50000", "100000"]
            assert int((cpu / "cpu.weight").read_text()) == cgroups.cpu_weight(0.25)
            assert int((memory / "memory.max").read_text()) == 300 * 1024 * 1024
            assert int((memory / "memory.low").read_text()) == 100 * 1024 * 1024
        else:
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (cpu / "cpu.shares").read_text().strip() == "256"
            assert int((memory / "memory.limit_in_bytes").read_text()) == 300 * 1024 * 1024
            assert int((memory / "memory.soft_limit_in_bytes").read_text()) == 100 * 1024 * 1024
        assert host_pids_of(cid)[0] in [int(p) for p in (cpu / "cgroup.procs").read_text().split()]


@pytest.mark.skipif(shutil.which("runsc") is None, reason="needs gVisor's runsc")
def test_gvisor_function_runs_on_the_gvisor_kernel(server):
    with esc.app.run():
        result = esc.kernel.remote()
    assert result["isolation"] == "gvisor"
    assert result["version"] != Path("/proc/version").read_text()
    code, listed, errors = result["ls"]
    assert code == 0 and "usr" in listed.split(), errors  # `ls DIR` works: the statx shim
    assert result["stat"] == (0, "directory\n")
    assert result["trusts_firebox"]  # /.firebox/ca-bundle.pem is bound in under gVisor too
    assert healthy(server)


def test_unknown_isolation_is_rejected_at_definition():
    app = esc.firebox.App("bad-isolation")
    with pytest.raises(esc.firebox.exception.InvalidError, match="isolation='vm'"):
        app.function(isolation="vm")(lambda: None)


def test_block_network_leaves_only_the_channel_to_the_control_plane(server):
    with socket.create_server(("127.0.0.1", 0)) as host_only:  # on the host's loopback
        elsewhere = f"http://127.0.0.1:{host_only.getsockname()[1]}"
        with esc.app.run():
            result = esc.offline.remote(elsewhere)
            assert result == {"reached_server_port": False, "nested": "namespaces"}
            # The server's own port answers inside, but only as the runtime's relay to the
            # control plane's unix socket (so the URLs it hands out work there).
            assert esc.offline.remote(server.url)["reached_server_port"] is True
            # A container with a network has a namespace of its own too: the host's loopback
            # is out of its reach (its egress: tests/test_walls.py).
            with pytest.raises(ConnectionRefusedError):
                esc.reach.remote(elsewhere)
            with pytest.raises(RemoteError,
                               match="block_network=True needs isolation='namespaces'"):
                esc.offline_without_isolation.remote()


def test_the_host_mask_skips_what_went_away_since_the_walk(tmp_path, monkeypatch):
    """The walk of /var finds a directory the server is removing (a sandbox's, in a state
    directory under /var): by the time its mask is made it is gone, which is not an error.
    (A CI run's image builds failed on exactly this.)"""
    from firebox.backends.isolation import sandbox_root

    gone = Path(f"/var/tmp/firebox-gone-{os.getpid()}/sb-1/private")
    monkeypatch.setattr(sandbox_root, "_unreadable",
                        lambda top: [gone] if top == Path("/var") else [])
    sandbox_root._make_mask(tmp_path / "mask")
    assert (tmp_path / "mask" / "etc").is_dir()
    assert not (tmp_path / "mask" / gone.relative_to("/")).exists()
