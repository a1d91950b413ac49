"""Per-container resource limits with cgroups, v1 or v2: cpu, memory and process count."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..wire import settings

if TYPE_CHECKING:
    from .base import Launch

log = logging.getLogger("firebox.backends.cgroups")

ROOT = settings.CGROUP_ROOT.get()  # read once, at import
PARENT = "firebox"  # every container's cgroup is <controller>/firebox/<name> (v1), firebox/<name>
CONTROLLERS = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000
DEFAULT_PIDS_MAX = 1024  # processes and threads per container; a fork bomb stops here
MIB = 1024 * 1024
# A container given no memory limit is killed above the larger of these (its request is its
# floor, as on Modal; the ceiling keeps it from taking what other containers reserved).
DEFAULT_LIMIT_FACTOR = 4  # times its request
DEFAULT_LIMIT_MIN_MB = 1024


@dataclass(frozen=True)
class Limits:
    cpu: float  # cores requested: a share of the cpu when the machine is busy
    cpu_limit: float | None  # cores at most: a hard cfs quota
    memory_mb: int  # requested: the memory the kernel reclaims towards (v1) or protects (v2)
    memory_limit_mb: int | None  # at most: above it the container is killed
    pids_max: int = DEFAULT_PIDS_MAX


def default_memory_limit_mb(request_mb: int, machine_mb: int) -> int:
    """The hard memory limit of a container that set none: 4x its request, at least 1 GiB, at
    most what the machine has (and never below the request itself)."""
    ceiling = max(DEFAULT_LIMIT_FACTOR * request_mb, DEFAULT_LIMIT_MIN_MB)
    return max(request_mb, min(ceiling, machine_mb))


def version() -> int | None:
    """2 on a unified hierarchy with cpu, memory and pids, 1 on a writable v1 one, else None."""
    try:
        enabled = (ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        enabled = None
    if enabled is not None:
        usable = set(CONTROLLERS) <= set(enabled) and os.access(ROOT, os.W_OK)
        return 2 if usable else None
    if all(os.access(ROOT / c, os.W_OK) for c in CONTROLLERS):
        return 1
    return None


def available() -> bool:
    """Whether containers get cpu, memory and process limits here."""
    return version() is not None


def group_dir(name: str, controller: str) -> Path:
    """Where the cgroup of a container named `name` shows the files of one controller."""
    if version() == 2:
        return ROOT / PARENT / name
    return ROOT / controller / PARENT / name


def sweep_stale(min_age: float = 60.0) -> int:
    """Remove the empty cgroups a killed server left behind. A live container's cgroup always
    holds its processes, and a new one is empty only for the moment before its process joins,
    so an empty one older than a minute belongs to nobody."""
    removed = 0
    now = time.time()
    parents = [ROOT / PARENT] if version() == 2 else [ROOT / c / PARENT for c in CONTROLLERS]
    for parent in parents:
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


def cpu_weight(cores: float) -> int:
    """cgroup v2's cpu.weight for a request in cores: v1's shares mapped onto 1..10000."""
    shares = max(2, int(cores * 1024))
    return 1 + ((shares - 2) * 9999) // 262142


class Cgroup:
    """One container's cgroup; made before its process starts. `create` picks the hierarchy."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits

    @classmethod
    def create(cls, name: str, limits: Limits) -> Cgroup:
        kind: type[Cgroup] = CgroupV2 if version() == 2 else CgroupV1
        cg = kind(name, limits)
        try:
            cg._make()
            cg.apply(limits)
        except BaseException:
            cg.remove()
            raise
        return cg

    def _make(self) -> None:
        raise NotImplementedError

    def apply(self, limits: Limits) -> None:
        """Change the limits of a running cgroup (a standby runtime taking on a container).
        Raises OSError if the processes already use more memory than the new limit."""
        raise NotImplementedError

    def rename(self, name: str) -> None:
        """Give the cgroup, processes and all, the name of another container."""
        raise NotImplementedError

    @property
    def dirs(self) -> list[Path]:
        raise NotImplementedError

    @property
    def procs_files(self) -> list[Path]:
        """Write a process's pid to each of these (before it forks) to put it in the cgroup."""
        return [d / "cgroup.procs" for d in self.dirs]

    def adopt(self, pid: int) -> None:
        """Move a running process (a container forked from a template) into the cgroup."""
        for f in self.procs_files:
            f.write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = self.procs_files[-1].read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def holds(self, pid: int) -> bool:
        """Whether the process has joined every one of this cgroup's directories."""
        for f in self.procs_files:
            try:
                if str(pid) not in f.read_text().split():
                    return False
            except OSError:
                return False
        return True

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
        raise NotImplementedError

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            _rmdir(d)


class CgroupV1(Cgroup):
    """A directory per controller: cpu/firebox/<name>, memory/firebox/<name>, pids/..."""

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(name, limits)
        self.by_controller = {c: ROOT / c / PARENT / name for c in CONTROLLERS}

    @property
    def dirs(self) -> list[Path]:
        return list(self.by_controller.values())  # pids last: pids() reads it

    def _make(self) -> None:
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self._write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US)

    def apply(self, limits: Limits) -> None:
        self._write("cpu", "cpu.shares", max(2, int(limits.cpu * 1024)))
        quota = max(1000, int(limits.cpu_limit * CFS_PERIOD_US)) if limits.cpu_limit else -1
        self._write("cpu", "cpu.cfs_quota_us", quota)
        self._write("memory", "memory.soft_limit_in_bytes", limits.memory_mb * MIB)
        if limits.memory_limit_mb:
            # Without swap accounting a container could page out past its limit.
            with contextlib.suppress(OSError):
                self._write("memory", "memory.swappiness", 0)
            self._write("memory", "memory.limit_in_bytes", limits.memory_limit_mb * MIB)
            with contextlib.suppress(OSError):
                self._write("memory", "memory.memsw.limit_in_bytes", limits.memory_limit_mb * MIB)
        self._write("pids", "pids.max", limits.pids_max)
        self.limits = limits

    def rename(self, name: str) -> None:
        # cgroup v1 allows rename(2) of a cgroup with processes inside.
        for controller, d in self.by_controller.items():
            target = d.parent / name
            d.rename(target)
            self.by_controller[controller] = target
        self.name = name

    def _write(self, controller: str, key: str, value: int) -> None:
        (self.by_controller[controller] / key).write_text(str(value))

    def oom_killed(self) -> bool:
        try:
            text = (self.by_controller["memory"] / "memory.oom_control").read_text()
        except OSError:
            return False
        return _field(text, "oom_kill") > 0


class CgroupV2(Cgroup):
    """One directory, firebox/<name>, under a parent that hands it cpu, memory and pids."""

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(name, limits)
        self.dir = ROOT / PARENT / name

    @property
    def dirs(self) -> list[Path]:
        return [self.dir]

    def _make(self) -> None:
        _prepare_parent()
        self.dir.mkdir()

    def apply(self, limits: Limits) -> None:
        self._write("cpu.weight", cpu_weight(limits.cpu))
        quota = max(1000, int(limits.cpu_limit * CFS_PERIOD_US)) if limits.cpu_limit else "max"
        self._write("cpu.max", f"{quota} {CFS_PERIOD_US}")
        self._write("memory.low", limits.memory_mb * MIB)
        if limits.memory_limit_mb:
            # Without this a container could page out past its limit.
            if (self.dir / "memory.swap.max").exists():
                self._write("memory.swap.max", 0)
            current = int((self.dir / "memory.current").read_text())
            if current > limits.memory_limit_mb * MIB:
                # v2 takes a lower memory.max and reclaims or kills; v1 refuses it: keep v1's.
                raise OSError(errno.EBUSY, f"{self.dir} already uses {current} bytes")
        self._write("memory.max", limits.memory_limit_mb * MIB if limits.memory_limit_mb else "max")
        self._write("pids.max", limits.pids_max)
        self.limits = limits

    def rename(self, name: str) -> None:
        # cgroup v2 has no rename(2) (EPERM): make the new group and move the processes over.
        # Memory they touched so far stays charged to the old group (v2 never moves charges).
        target = CgroupV2(name, self.limits)
        target._make()
        try:
            target.apply(self.limits)
            for _ in range(50):  # a process forking meanwhile may leave a child behind
                pids = self.pids()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        (target.dir / "cgroup.procs").write_text(str(pid))
        except BaseException:
            target.remove()
            raise
        old = self.dir
        self.dir, self.name = target.dir, name
        _rmdir(old)

    def _write(self, key: str, value: int | str) -> None:
        (self.dir / key).write_text(str(value))

    def kill_all(self) -> None:
        kill = self.dir / "cgroup.kill"  # Linux 5.14+: one write kills every process, even forks
        if not kill.exists():
            super().kill_all()
            return
        try:
            kill.write_text("1")
        except OSError:
            return
        for _ in range(500):
            if not self.pids():
                return
            time.sleep(0.002)

    def oom_killed(self) -> bool:
        try:
            text = (self.dir / "memory.events").read_text()
        except OSError:
            return False
        return _field(text, "oom_kill") > 0


def _prepare_parent() -> None:
    """Make firebox/ and let its children use cpu, memory and pids. A cgroup that hands
    controllers to children may hold no processes itself, so firebox/ never does."""
    wanted = " ".join(f"+{c}" for c in CONTROLLERS)
    parent = ROOT / PARENT
    for d in (ROOT, parent):
        d.mkdir(exist_ok=True)
        if not set(CONTROLLERS) <= set((d / "cgroup.subtree_control").read_text().split()):
            (d / "cgroup.subtree_control").write_text(wanted)
    # A child's memory.low only protects as much as its parent's does: let the children's own
    # values decide.
    if (parent / "memory.low").read_text().strip() != "max":
        (parent / "memory.low").write_text("max")


def _rmdir(d: Path) -> None:
    for _ in range(100):  # a killed process leaves its cgroup a moment after it dies
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.005)
    log.warning("could not remove cgroup %s", d)


def _field(text: str, key: str) -> int:
    """A value from a flat keyed file such as memory.events or memory.oom_control."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def machine_memory_mb() -> int:
    """The memory containers may reserve here: FIREBOX_MEMORY_MB, else all of this machine's."""
    return settings.MEMORY_MB.get() or (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB)


async def joined(group: Cgroup, proc: asyncio.subprocess.Process,
                 timeout: float = 5.0) -> bool:
    """Wait for a just-spawned process to have written itself into its cgroup."""
    deadline = time.monotonic() + timeout
    while not group.holds(proc.pid):
        if proc.returncode is not None or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


def retarget(group: Cgroup, limits: Limits, container_id: str) -> None:
    """A standby's cgroup becomes the container's: its limits and its name."""
    group.apply(limits)
    group.rename(container_id)


def limits_for(launch: Launch) -> Limits:
    return Limits(launch.cpu, launch.cpu_limit, launch.memory_mb, memory_limit_for(launch))


def memory_limit_for(launch: Launch) -> int:
    """Its own limit, else the default ceiling over the memory the scheduler may hand out."""
    if launch.memory_limit_mb:
        return launch.memory_limit_mb
    return default_memory_limit_mb(launch.memory_mb, machine_memory_mb())
