"""On a cgroup v1 host, tests/test_cgroups.py also runs on cgroup v2, in a VM booted for it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from firebox.backends import cgroups

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cgroup_v2_vm.sh"


def _skip_reason() -> str | None:
    if cgroups.version() == 2:
        return "this host is cgroup v2: tests/test_cgroups.py runs on it directly"
    if os.geteuid() != 0:
        return "needs root to boot the VM"
    if not shutil.which("qemu-system-x86_64") or not glob.glob("/boot/vmlinuz-*"):
        return "needs qemu-system-x86 and linux-image-amd64 (scripts/test.sh installs them)"
    return None


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
@pytest.mark.timeout(600)
def test_limits_hold_on_a_cgroup_v2_kernel():
    run = subprocess.run(["bash", str(SCRIPT), "tests/test_cgroups.py"], capture_output=True,
                         text=True, timeout=590)
    out = run.stdout + run.stderr
    assert "/sys/fs/cgroup: cgroup2fs" in out, out
    assert "FIREBOX-VM-STATUS=0" in out and run.returncode == 0, out
    assert " passed" in out and "skipped" not in out, out
