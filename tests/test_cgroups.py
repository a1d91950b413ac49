"""cgroup limits hold on the host's hierarchy (v1 or v2; scripts/cgroup_v2_vm.sh runs v2)."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firebox.backends import cgroups, isolation

pytestmark = pytest.mark.skipif(not cgroups.available(),
                                reason="needs writable cgroups (v1 or v2 with cpu, memory, pids)")


@pytest.fixture
def groups() -> Iterator[list[cgroups.Cgroup]]:
    made: list[cgroups.Cgroup] = []
    yield made
    for g in made:
        g.remove()


def make(groups: list[cgroups.Cgroup], **limits: object) -> cgroups.Cgroup:
    spec = {"cpu": 0.25, "cpu_limit": None, "memory_mb": 64, "memory_limit_mb": None, **limits}
    g = cgroups.Cgroup.create(f"test-{secrets.token_hex(4)}", cgroups.Limits(**spec))  # type: ignore[arg-type]
    groups.append(g)
    return g


def run_in(group: cgroups.Cgroup, code: str, **kw: object) -> subprocess.Popen[str]:
    argv = isolation.in_cgroup([sys.executable, "-c", code], group.procs_files)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


HOLD = """
import sys, time
hoard = bytearray({mb} * 1024 * 1024)
for i in range(0, len(hoard), 4096):
    hoard[i] = 1
print("holding", flush=True)
time.sleep(60)
"""


def test_memory_bomb_is_killed_and_reported_as_oom(groups):
    bomb = make(groups, memory_limit_mb=64)
    calm = make(groups, memory_limit_mb=64)
    code = "h = []\nwhile True: h.append(bytearray(8 << 20)); h[-1][::4096] = b'1' * 2048"
    p = run_in(bomb, code)
    assert p.wait(timeout=30) == -signal.SIGKILL
    assert bomb.oom_killed()
    q = run_in(calm, HOLD.format(mb=16))
    assert q.stdout is not None and q.stdout.readline() == "holding\n"
    calm.kill_all()
    assert q.wait(timeout=10) == -signal.SIGKILL
    assert not calm.oom_killed()  # a plain SIGKILL is not an oom kill


def test_lowering_the_memory_limit_below_use_is_refused(groups):
    g = make(groups)
    p = run_in(g, HOLD.format(mb=80))
    assert p.stdout is not None and p.stdout.readline() == "holding\n"
    with pytest.raises(OSError):
        g.apply(cgroups.Limits(0.25, None, 16, 32))
    assert p.poll() is None  # the refusal killed nothing
    g.apply(cgroups.Limits(0.25, None, 64, 256))
    assert g.limits.memory_limit_mb == 256


def test_cpu_limit_throttles_a_busy_loop(groups):
    g = make(groups, cpu_limit=0.2)
    wall = 2.0
    p = run_in(g, "while True: pass")
    time.sleep(wall)
    g.kill_all()
    _, status, usage = os.wait4(p.pid, 0)
    assert os.WIFSIGNALED(status)
    used = usage.ru_utime + usage.ru_stime
    assert 0.05 * wall < used < 0.35 * wall, used  # about 0.2 of a core, never a whole one


def test_fork_bomb_stops_at_pids_max_and_remove_leaves_nothing(groups):
    g = make(groups, pids_max=16)
    code = """
import subprocess
started = 0
try:
    while started < 200:
        subprocess.Popen(["sleep", "60"])
        started += 1
except OSError as exc:
    print(started, exc.errno, flush=True)
import time; time.sleep(60)
"""
    p = run_in(g, code)
    assert p.stdout is not None
    started, err = map(int, p.stdout.readline().split())
    assert err == errno.EAGAIN
    assert 5 < started < 16
    pids = g.pids()
    assert len(pids) == started + 1  # the sleeps and the bomb (its in_cgroup shell exec-ed it)
    g.remove()
    p.wait(timeout=10)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not any(d.exists() for d in g.dirs)
    assert g.pids() == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_rename_keeps_the_processes_and_the_limits(groups):
    g = make(groups, memory_limit_mb=128)
    p = run_in(g, HOLD.format(mb=8))
    assert p.stdout is not None and p.stdout.readline() == "holding\n"
    old_dirs = list(g.dirs)
    new_name = f"test-{secrets.token_hex(4)}"
    g.rename(new_name)
    assert g.name == new_name
    assert not any(d.exists() for d in old_dirs)
    assert g.pids() == [p.pid]
    assert f"/{cgroups.PARENT}/{new_name}\n" in cgroup_of(p.pid)
    limit = cgroups.group_dir(new_name, "memory") / (
        "memory.max" if cgroups.version() == 2 else "memory.limit_in_bytes")
    assert int(limit.read_text()) == 128 * cgroups.MIB
    g.remove()
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_limits_are_written_in_the_hierarchys_own_terms(groups):
    g = make(groups, cpu=0.25, cpu_limit=0.5, memory_mb=100, memory_limit_mb=300, pids_max=99)
    cpu, memory, pids = (cgroups.group_dir(g.name, c) for c in ("cpu", "memory", "pids"))
    assert (pids / "pids.max").read_text().strip() == "99"
    if cgroups.version() == 2:
        assert cpu == memory == pids == cgroups.ROOT / cgroups.PARENT / g.name
        assert (cpu / "cpu.max").read_text().split() == ["50000", "100000"]
        assert int((cpu / "cpu.weight").read_text()) == cgroups.cpu_weight(0.25) == 10
        assert int((memory / "memory.low").read_text()) == 100 * cgroups.MIB
        assert int((memory / "memory.max").read_text()) == 300 * cgroups.MIB
        if (memory / "memory.swap.max").exists():
            assert (memory / "memory.swap.max").read_text().strip() == "0"
        g.apply(cgroups.Limits(1.0, None, 64, None))
        assert (cpu / "cpu.max").read_text().split() == ["max", "100000"]
        assert (memory / "memory.max").read_text().strip() == "max"
    else:
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.shares").read_text().strip() == "256"
        assert int((memory / "memory.soft_limit_in_bytes").read_text()) == 100 * cgroups.MIB
        assert int((memory / "memory.limit_in_bytes").read_text()) == 300 * cgroups.MIB
        g.apply(cgroups.Limits(1.0, None, 64, None))
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "-1"


def test_holds_tells_when_a_process_has_joined(groups):
    """A standby runtime is handed over only once its process sits in its cgroup: renamed
    before that, the cgroup is gone when the process's shell writes itself into it."""
    g = make(groups)
    assert not g.holds(os.getpid())
    proc = run_in(g, "import time; time.sleep(30)")
    try:
        deadline = time.monotonic() + 10
        while not g.holds(proc.pid):
            assert time.monotonic() < deadline, "the process never joined"
            time.sleep(0.01)
        g.rename(f"test-{secrets.token_hex(4)}")
        assert g.holds(proc.pid)
    finally:
        proc.kill()
        proc.wait()
