"""Per-container resource limits with cgroup v1: cpu, memory and process count."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("firebox.backends.cgroups")

ROOT = Path(os.environ.get("FIREBOX_CGROUP_ROOT") or "/sys/fs/cgroup")
PARENT = "firebox"  # every container's cgroup lives under <controller>/firebox/
CONTROLLERS = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000
DEFAULT_PIDS_MAX = 1024  # processes and threads per container; a fork bomb stops here


@dataclass(frozen=True)
class Limits:
    cpu: float  # cores requested: a share of the cpu when the machine is busy
    cpu_limit: float | None  # cores at most: a hard cfs quota
    memory_mb: int  # requested: the soft limit the kernel reclaims towards under pressure
    memory_limit_mb: int | None  # at most: above it the container is killed
    pids_max: int = DEFAULT_PIDS_MAX


def available() -> bool:
    """cgroup v1 with the controllers we use, writable by this process."""
    return all(os.access(ROOT / c, os.W_OK) for c in CONTROLLERS) and not (
        ROOT / "cgroup.controllers"
    ).exists()


def sweep_stale(min_age: float = 60.0) -> int:
    """Remove the empty cgroups a killed server left behind. A live container's cgroup always
    holds its processes, and a new one is empty only for the moment before its process joins,
    so an empty one older than a minute belongs to nobody."""
    removed = 0
    now = time.time()
    for controller in CONTROLLERS:
        parent = ROOT / controller / PARENT
        if not parent.is_dir():
            continue
        for d in parent.iterdir():
            try:
                if not d.is_dir() or now - d.stat().st_mtime < min_age:
                    continue
                if (d / "cgroup.procs").read_text().strip():
                    continue
                d.rmdir()
                removed += 1
            except OSError:
                continue
    return removed


class Cgroup:
    """One container's cgroup in each controller; made before its process starts."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.dirs = {c: ROOT / c / PARENT / name for c in CONTROLLERS}

    @classmethod
    def create(cls, name: str, limits: Limits) -> Cgroup:
        cg = cls(name, limits)
        try:
            for d in cg.dirs.values():
                d.mkdir(parents=True, exist_ok=True)
            cg._write("cpu", "cpu.shares", max(2, int(limits.cpu * 1024)))
            if limits.cpu_limit:
                cg._write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US)
                quota = max(1000, int(limits.cpu_limit * CFS_PERIOD_US))
                cg._write("cpu", "cpu.cfs_quota_us", quota)
            mib = 1024 * 1024
            cg._write("memory", "memory.soft_limit_in_bytes", limits.memory_mb * mib)
            if limits.memory_limit_mb:
                cg._write("memory", "memory.limit_in_bytes", limits.memory_limit_mb * mib)
                # Without swap accounting a container could page out past its limit.
                with contextlib.suppress(OSError):
                    cg._write("memory", "memory.memsw.limit_in_bytes", limits.memory_limit_mb * mib)
                with contextlib.suppress(OSError):
                    cg._write("memory", "memory.swappiness", 0)
            cg._write("pids", "pids.max", limits.pids_max)
        except BaseException:
            cg.remove()
            raise
        return cg

    def apply(self, limits: Limits) -> None:
        """Change the limits of a running cgroup (a standby runtime taking on a container).
        Raises OSError if the processes already use more memory than the new limit."""
        mib = 1024 * 1024
        self._write("cpu", "cpu.shares", max(2, int(limits.cpu * 1024)))
        quota = max(1000, int(limits.cpu_limit * CFS_PERIOD_US)) if limits.cpu_limit else -1
        self._write("cpu", "cpu.cfs_quota_us", quota)
        self._write("memory", "memory.soft_limit_in_bytes", limits.memory_mb * mib)
        if limits.memory_limit_mb:
            with contextlib.suppress(OSError):
                self._write("memory", "memory.swappiness", 0)
            self._write("memory", "memory.limit_in_bytes", limits.memory_limit_mb * mib)
            with contextlib.suppress(OSError):
                self._write("memory", "memory.memsw.limit_in_bytes", limits.memory_limit_mb * mib)
        self._write("pids", "pids.max", limits.pids_max)
        self.limits = limits

    def rename(self, name: str) -> None:
        """Rename the cgroup in every controller (cgroup v1 allows it with processes inside)."""
        for controller, d in self.dirs.items():
            target = d.parent / name
            d.rename(target)
            self.dirs[controller] = target
        self.name = name

    def _write(self, controller: str, key: str, value: int) -> None:
        (self.dirs[controller] / key).write_text(str(value))

    @property
    def procs_files(self) -> list[Path]:
        """Write a process's pid to each of these (before it forks) to put it in the cgroup."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> list[int]:
        try:
            text = (self.dirs["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill_all(self) -> None:
        """SIGKILL every process in the container, including ones that escaped its session."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for exceeding the memory limit."""
        try:
            text = (self.dirs["memory"] / "memory.oom_control").read_text()
        except OSError:
            return False
        fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(fields.get("oom_kill", 0)) > 0

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(100):  # a killed process leaves its cgroup a moment after it dies
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                log.warning("could not remove cgroup %s", d)
