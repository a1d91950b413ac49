"""Build containers: where an image's apt_install and run_commands steps (and its pip installs,
where the server can contain them) run, as root over the layers so far, walled like a function
container, each step in a cgroup of its own with a time limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ..backends import cgroups, netns
from ..backends.isolation import (
    SANDBOX_FROM_HOST,
    SandboxRoot,
    in_cgroup,
    sandbox_base,
    visible_hidden,
)
from ..wire import settings
from .layers import NEVER

Log = Callable[[str], Awaitable[None]]
BUILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What root may do in a build container: enough for apt (files, owners, its _apt user), never
# mounts, device nodes, raw I/O, modules or tracing, which would reach past the overlays.
BUILD_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
              "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
              "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_SETFCAP")
# A build step's cgroup: like a container's, so one tenant's build cannot take the machine.
BUILD_CPU = 2.0  # cores it may use at most
BUILD_PIDS = 4096
# Where each step's mask of the host's secrets is made: outside the state directory, which may
# be under /var, and overlayfs refuses a lower dir (the mask's var/) under another (/var).
MASKS = Path("/run/firebox-build-masks")
RESOLV = "/etc/resolv.conf"
NO_NETWORK = ("build containers on this server have no network (FIREBOX_CONTAINER_EGRESS=0, or "
              "no root, ip or nft), so a step that downloads fails: ask its operator for egress")


class StepExited(RuntimeError):
    """A step's process exited with an error; its output already says why."""


def can_contain() -> bool:
    """Whether build containers can run here."""
    return shutil.which("bwrap") is not None and shutil.which("unshare") is not None


class BuildContainers:
    def __init__(self, hidden: Sequence[Path], network: netns.Pool | None) -> None:
        """hidden: what no build container may see (the server's state, its client config).
        network: the server's namespaces with egress for containers (the backend's pool);
        None: build containers get loopback only, as the server's containers do."""
        self.hidden = list(hidden)
        self.network = network

    def python_dirs(self, uv: Path) -> list[Path]:
        """What a pip step's uv and Python need that a build container lacks: the venv,
        Python's own prefix and uv's directory, unless they are in the system dirs or hidden."""
        system = [Path("/") / name for name in SANDBOX_FROM_HOST]
        hidden = [h.resolve() for h in self.hidden]
        wanted = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                  uv.resolve().parent}
        wanted = {p for p in wanted if not any(p.is_relative_to(q) for q in [*system, *hidden])}
        return sorted(p for p in wanted if not any(p != q and p.is_relative_to(q)
                                                   for q in wanted))

    async def run(self, script: str, env: dict[str, str], workdir: str | None,
                  layers: Sequence[Path], part: Path, log: Log,
                  binds: Sequence[tuple[str, str, bool]] = (), keep_files: bool = True,
                  rooted: bool = False) -> None:
        """Run script in a build container over layers (the image's so far, newest first).
        keep_files: its writes become the layer at part (else they are dropped, and only what
        binds wrote stays). rooted: the layers are a registry image's, its whole root: the
        container sees that and nothing of the host but its DNS settings.

        Root inside keeps BUILD_CAPS, CAP_DAC_OVERRIDE among them, so the wall is what it
        sees: the host's system dirs and /var with what not everyone may read taken out (a
        mask made for each step, so a secret made since the last one is out too), the host's
        other top-level directories empty, the layers, and binds; and a network namespace of
        its own, with egress (never the host itself) where the server gives containers it."""
        if not can_contain():
            raise RuntimeError("apt_install and run_commands need bubblewrap and unshare on the "
                               "server (Debian packages bubblewrap and util-linux).")
        if rooted:
            fs = SandboxRoot(part / "build", image_root=[
                layer / "rootfs" for layer in layers if (layer / "rootfs").is_dir()])
        else:
            for layer in layers:  # SandboxRoot reads both parts of every layer
                (layer / "upper").mkdir(exist_ok=True)
                (layer / "root").mkdir(exist_ok=True)
            fs = SandboxRoot(part / "build", layers,
                             empty=[n for n in os.listdir("/") if n not in SANDBOX_FROM_HOST])
        MASKS.mkdir(mode=0o700, exist_ok=True)
        mask_dir = Path(tempfile.mkdtemp(dir=MASKS))
        link = None
        try:
            if not rooted:
                fs.masks = await asyncio.to_thread(sandbox_base, mask_dir, False)
            mounts = await asyncio.to_thread(fs.prepare)
            argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    " && ".join([*mounts, 'exec "$@"']), "firebox-build",
                    *self._bwrap(script, env, workdir, layers, fs, binds, rooted)]
            await log(f"$ {script}")
            try:
                if self.network is not None:
                    link = await asyncio.to_thread(self.network.take)
                    argv = ["nsenter", f"--net={link.path}", *argv]
                await stream(argv, {"PATH": BUILD_PATH}, log)
            except StepExited as exc:
                if self.network is None:
                    raise StepExited(f"{exc}; {NO_NETWORK}") from None
                raise
            finally:
                if keep_files and rooted:
                    await asyncio.to_thread(_collect_root, fs, part)
                elif keep_files:
                    await asyncio.to_thread(self._collect, fs, part)
                else:
                    await asyncio.to_thread(shutil.rmtree, fs.base, True)
        finally:
            if link is not None:
                await asyncio.to_thread(netns.remove, link)
            await asyncio.to_thread(shutil.rmtree, mask_dir, True)

    def _bwrap(self, script: str, env: dict[str, str], workdir: str | None,
               layers: Sequence[Path], fs: SandboxRoot,
               binds: Sequence[tuple[str, str, bool]], rooted: bool = False) -> list[str]:
        """The bubblewrap command that runs script as root over fs, once its overlays are
        mounted: the earlier layers' python/ dirs on PYTHONPATH, binds in place, the hidden
        directories it would otherwise see covered."""
        py = [layer / "python" for layer in layers if (layer / "python").is_dir()]
        inner = ["bwrap", "--bind", str(fs.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
                 "--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--hostname", "firebox-build", "--die-with-parent", "--new-session",
                 "--clearenv", "--cap-drop", "ALL"]
        for cap in BUILD_CAPS:
            inner += ["--cap-add", cap]
        if self.network is None:
            inner.append("--unshare-net")  # loopback only, as the server's containers get
        full_env = {"PATH": BUILD_PATH, "HOME": "/root", "LANG": "C.UTF-8", **env}
        paths = [f"/.image/python/{i}" for i in range(len(py))]
        if paths:
            full_env["PYTHONPATH"] = ":".join(paths)
        for k, v in full_env.items():
            inner += ["--setenv", k, v]
        for layer_python, dest in zip(py, paths, strict=True):
            inner += ["--ro-bind", str(layer_python), dest]
        for src, dest, ro in binds:
            inner += ["--ro-bind" if ro else "--bind", src, dest]
        if rooted and self.network is not None and Path(RESOLV).is_file():
            inner += ["--ro-bind", RESOLV, RESOLV]  # the host's name servers, as Docker's
        at_own_path = [Path(src) for src, dest, _ro in binds if src == dest]  # Python's dirs
        for p in [*([] if rooted else visible_hidden(self.hidden)),
                  *(h for h in {h.resolve() for h in self.hidden}
                    if any(h.is_relative_to(b) for b in at_own_path))]:
            inner += ["--tmpfs", str(p)]
        if workdir:
            inner += ["--dir", workdir, "--chdir", workdir]
        return [*inner, "--", "/bin/sh", "-c", "set -e\n" + script]

    def _collect(self, fs: SandboxRoot, part: Path) -> None:
        """Once the build container is gone: its upper dirs and new top-level entries become
        the layer."""
        build = part / "build"
        upper = part / "upper"
        (build / "upper").rename(upper)
        for hidden in visible_hidden(self.hidden):
            # Covering it copied its mount point (and parents) up: not the layer's, and its
            # name is the server's.
            d = upper / hidden.relative_to("/")
            while d != upper and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
                d = d.parent
        for d in list(upper.iterdir()):
            if d.name in NEVER or (d.is_dir() and not any(d.iterdir())):
                shutil.rmtree(d) if d.is_dir() else d.unlink()
        root = part / "root"
        root.mkdir(exist_ok=True)
        host = set(os.listdir("/"))
        for entry in fs.rootfs.iterdir():
            if entry.name in host or entry.name in NEVER:
                continue
            entry.rename(root / entry.name)
        shutil.rmtree(build, ignore_errors=True)


def _collect_root(fs: SandboxRoot, part: Path) -> None:
    """Once a build container over a registry image is gone: its upper directory is the
    layer's rootfs/, less the mount points bubblewrap made for itself."""
    upper = fs.base / "upper"
    shutil.rmtree(upper / ".image", ignore_errors=True)
    resolv = upper / RESOLV.lstrip("/")
    if resolv.is_file() and not resolv.is_symlink() and resolv.stat().st_size == 0:
        resolv.unlink()  # made as the mount point of the host's
    for d in list(upper.iterdir()):
        if d.name in NEVER and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    upper.rename(part / "rootfs")
    shutil.rmtree(fs.base, ignore_errors=True)


async def stream(argv: list[str], env: dict[str, str], log: Log) -> None:
    """Run a step's command in a cgroup of its own (where cgroups work), its output to log.
    Raises StepExited if it fails, says so if it was killed for memory."""
    memory = settings.IMAGE_BUILD_MEMORY_MB.get()
    group = None
    if cgroups.available():
        group = await asyncio.to_thread(
            cgroups.Cgroup.create, f"build-{os.urandom(6).hex()}",
            cgroups.Limits(BUILD_CPU, BUILD_CPU, min(memory, 1024), memory, BUILD_PIDS))
        argv = in_cgroup(argv, group.procs_files)
    try:
        await _run(argv, env, log)
    except StepExited:
        if group is not None and group.oom_killed():
            raise StepExited(f"the step was killed for using more than {memory} MiB of "
                             "memory (FIREBOX_IMAGE_BUILD_MEMORY_MB on the server)") from None
        raise
    finally:
        if group is not None:
            await asyncio.to_thread(group.kill_all)
            await asyncio.to_thread(group.remove)


async def _run(argv: list[str], env: dict[str, str], log: Log) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert proc.stdout is not None
    limit = settings.IMAGE_STEP_TIMEOUT.get()
    try:
        async with asyncio.timeout(limit):
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:  # a line longer than the stream limit: take what is there
                    line = await proc.stdout.read(65536)
                if not line:
                    break
                await log(line.decode("utf-8", "replace").rstrip("\n"))
            code = await proc.wait()
    except TimeoutError:
        raise StepExited(f"the step ran longer than {limit:.0f} s and was stopped "
                         "(FIREBOX_IMAGE_STEP_TIMEOUT on the server)") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: its whole process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if code != 0:
        raise StepExited(f"the step exited with code {code}")
