"""A sandbox's root file system: the host's directories as read-only overlay layers under its
own writable ones, and the layers every sandbox and image build has over the host's (the mask
of what not everyone may read, gVisor's statx shim)."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import stat
import subprocess
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...images.layers import PY_MOUNT, with_python
from .modes import IsolationUnavailable
from .view import SYSTEM_DIRS, under

log = logging.getLogger("firebox.backends.isolation")

# Top-level directories a sandbox does not get from the host: the runtime mounts its own
# /proc, /sys and /dev, and /tmp and /run start empty.
NOT_FROM_HOST = {"proc", "sys", "dev", "tmp", "run", "lost+found"}
# What a sandbox gets of the host: its programs, libraries, configuration and /var, with what
# of /etc and /var is not readable by everyone taken out (sandbox_base). These directories of a
# Linux root start empty; any other top-level directory of the host (/work, /data) is absent.
SANDBOX_FROM_HOST = (*SYSTEM_DIRS, "var")
SANDBOX_EMPTY = {"root", "home", "srv", "opt", "mnt", "media", "boot"}
# Preloaded into every program of a gVisor sandbox: runsc 20221219's statx(2) and fstatat(2)
# refuse AT_NO_AUTOMOUNT with EINVAL, and coreutils 9 passes it on every stat (so `ls /` and
# `stat /` failed). gVisor mounts nothing automatically, so without the flag nothing changes.
STATX_SHIM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
int statx(int fd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    return syscall(SYS_statx, fd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}
int fstatat(int fd, const char *path, struct stat *buf, int flags) {
    return syscall(SYS_newfstatat, fd, path, buf, flags & ~AT_NO_AUTOMOUNT);
}
int fstatat64(int fd, const char *path, struct stat64 *buf, int flags) {
    return syscall(SYS_newfstatat, fd, path, buf, flags & ~AT_NO_AUTOMOUNT);
}
"""
SHIM_PATH = "/usr/lib/firebox/statx.so"
_base_lock = threading.Lock()
_no_shim: set[Path] = set()


@dataclass
class SandboxRoot:
    """A sandbox's file system: the host's directories as read-only lower layers (under any
    snapshot layers), with this sandbox's own upper directories taking every write. Mounted
    with overlayfs in a private mount namespace, so the mounts vanish with the sandbox."""

    base: Path  # <state>/sandboxes/<id>: rootfs/, upper/, work/, empty/
    layers: Sequence[Path] = ()  # snapshot directories, newest first, each with upper/ and root/
    masks: Sequence[Path] = ()  # layers between the snapshots and the host's (sandbox_base)
    from_host: Collection[str] = SANDBOX_FROM_HOST  # the host's top-level directories it gets
    # The host's top-level directories it gets empty, its own to write in: image build
    # containers take every one not from the host, so what a step writes there is the layer's.
    empty: Collection[str] = frozenset(SANDBOX_EMPTY)
    # A built image's python/ dirs (its pip_install packages), newest first: bound read-only
    # at PY_MOUNT/0, /1, ... and first on its commands' PYTHONPATH, as in function containers.
    python: Sequence[Path] = ()
    # A registry image's root, its layers' rootfs/ dirs newest first: the whole root is one
    # overlay of them (base/upper takes the writes) and nothing of the host shows.
    image_root: Sequence[Path] = ()

    @property
    def rootfs(self) -> Path:
        return self.base / "rootfs"

    def prepare(self) -> list[str]:
        """Make the skeleton and return the shell lines that mount its overlays."""
        if self.image_root:
            return self._prepare_image_root()
        for part in ("rootfs", "upper", "work", "empty"):
            (self.base / part).mkdir(parents=True, exist_ok=True)
        for layer in reversed(self.layers):  # files and directories made at "/" in a snapshot
            if not (layer / "root").is_dir():  # an image's layer of Python packages only
                continue
            for entry in (layer / "root").iterdir():
                dest = self.rootfs / entry.name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, dest, symlinks=True, dirs_exist_ok=True)
                elif not dest.exists():
                    shutil.copy2(entry, dest, follow_symlinks=False)
        entries = []
        for name in sorted(os.listdir("/")):
            host = Path("/") / name
            dest = self.rootfs / name
            shown = name in self.from_host
            if host.is_symlink():
                if shown and not dest.is_symlink() and not dest.exists():
                    dest.symlink_to(os.readlink(host))
                continue
            if not host.is_dir() or not (shown or name in NOT_FROM_HOST or name in self.empty):
                continue
            dest.mkdir(exist_ok=True)
            if name in ("proc", "sys", "dev", "lost+found"):
                continue
            lowers = [str(layer / "upper" / name) for layer in self.layers
                      if (layer / "upper" / name).is_dir()]
            if shown and name not in NOT_FROM_HOST:
                lowers += [str(m / name) for m in self.masks if (m / name).is_dir()]
                lowers.append(str(host))
            else:
                lowers.append(str(self.base / "empty"))
            upper, work = self.base / "upper" / name, self.base / "work" / name
            upper.mkdir(exist_ok=True)
            work.mkdir(exist_ok=True)
            entries.append(_overlay_entry(lowers, upper, work, dest))
        for inside in self.python_paths():
            (self.rootfs / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return self._mount_all(entries)

    def _prepare_image_root(self) -> list[str]:
        for part in ("rootfs", "upper", "work"):
            (self.base / part).mkdir(parents=True, exist_ok=True)
        upper = self.base / "upper"
        for inside in self.python_paths():  # mount points, made where the writes go
            (upper / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return self._mount_all([_overlay_entry([str(p) for p in self.image_root], upper,
                                               self.base / "work", self.rootfs)])

    def _mount_all(self, entries: list[str]) -> list[str]:
        """The overlays' fstab entries and then the python/ dirs' binds, in one fstab: one
        mount process for them all (a `mount` apiece cost about 4 ms each)."""
        for host, inside in zip(self.python, self.python_paths(), strict=True):
            entries.append(f"{_fstab_field(str(host))} "
                           f"{_fstab_field(str(self.rootfs / inside.lstrip('/')))} "
                           "none bind,ro 0 0\n")
        fstab = self.base / "fstab"
        fstab.write_text("".join(entries))
        return [f"mount --all --fstab {shlex.quote(str(fstab))}"]

    def python_paths(self) -> list[str]:
        return [f"{PY_MOUNT}/{i}" for i in range(len(self.python))]

    def python_env(self, env: dict[str, str]) -> dict[str, str]:
        """env with the image's Python packages and their commands found first."""
        out = dict(env)
        inside = self.python_paths()
        with_python(out, inside, [f"{d}/bin" for host, d in zip(self.python, inside,
                                                                   strict=True)
                                  if (host / "bin").is_dir()])
        return out

    def mounted_dirs(self) -> list[str]:
        """Top-level directories that are overlays: a snapshot takes their upper directories."""
        return sorted(p.name for p in (self.base / "upper").iterdir())


def sandbox_base(directory: Path, gvisor: bool) -> list[Path]:
    """The layers every sandbox has over the host's directories, made once per server under
    directory: whiteouts for what of /etc and /var is not readable by everyone, /etc/shadow and
    /etc/gshadow with no passwords, and under gVisor the statx shim (where a C compiler is
    installed). Newest first, as SandboxRoot.masks."""
    with _base_lock:
        mask, shim, alias = directory / "mask", directory / "gvisor", directory / "python"
        if not mask.exists():
            _make_mask(mask)
        if not alias.exists():
            _make_python_alias(alias)
        if gvisor:
            _shim_layer(directory)
        return [shim, alias, mask] if gvisor and shim.exists() else [alias, mask]


def statx_shim(directory: Path) -> Path | None:
    """The statx shim's library for gVisor function containers (their LD_PRELOAD), built once
    per server under directory as sandboxes' is; None where it cannot be built."""
    with _base_lock:
        layer = _shim_layer(directory)
    return layer / SHIM_PATH.lstrip("/") if layer is not None else None


def _shim_layer(directory: Path) -> Path | None:
    shim = directory / "gvisor"
    if not shim.exists() and directory not in _no_shim and not _make_shim(shim):
        _no_shim.add(directory)  # said once in the log; not tried for every sandbox
    return shim if shim.exists() else None


def _make_python_alias(dest: Path) -> None:
    """A layer with /usr/local/bin/python -> python3 where the host has no `python` (Debian's
    python3 package makes none): Modal's default image runs `python`, and so do its apps."""
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    python3 = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python3 and not shutil.which("python", path="/usr/local/bin:/usr/bin:/bin"):
        bin_dir = Path("/usr/local/bin")
        made = tmp / "usr" / "local" / "bin"
        made.mkdir(parents=True)
        for host, ours in ((bin_dir.parents[1], made.parents[1]), (bin_dir.parent, made.parent),
                           (bin_dir, made)):  # the host's owners and modes, as the mask's
            st = host.stat()
            os.chown(ours, st.st_uid, st.st_gid)
            ours.chmod(stat.S_IMODE(st.st_mode))
        (made / "python").symlink_to(python3)
    tmp.rename(dest)


def _make_mask(dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for top in ("/etc", "/var"):
        for path in _unreadable(Path(top)):
            try:
                _mask_one(tmp, path)
            except FileNotFoundError:
                # Gone since the walk (a container's or sandbox's directory the server just
                # removed, with what was under it): nothing left to mask.
                continue
    (tmp / "etc").mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)


def _mask_one(tmp: Path, path: Path) -> None:
    """Mask one entry that not everyone may read: a whiteout, or a shadow file without
    passwords, under parent directories with the host's owners and modes."""
    target = tmp / path.relative_to("/")
    for parent in reversed(path.parents[:-1]):
        # Over the host's, a directory of the mask is the one seen: its owner and mode.
        made = tmp / parent.relative_to("/")
        if not made.exists():
            made.mkdir(parents=True)
            st = parent.stat()
            os.chown(made, st.st_uid, st.st_gid)
            made.chmod(stat.S_IMODE(st.st_mode))
    if path in (Path("/etc/shadow"), Path("/etc/gshadow")):
        lines = path.read_text().splitlines()
        blank = "*" if path.name == "shadow" else "!"
        target.write_text("".join(f"{name}:{blank}:{rest.partition(':')[2]}\n"
                                  for name, _, rest in (ln.partition(":") for ln in lines)
                                  if name))
        shutil.copystat(path, target)
        st = path.stat()
        os.chown(target, st.st_uid, st.st_gid)
    else:  # an overlayfs whiteout: the entry is gone from the layers below
        os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))


def _unreadable(top: Path) -> list[Path]:
    """Files and directories under top that not everyone may read (a directory whole). By
    scandir rather than os.walk: a third of the time, and image builds do this every step."""
    found: list[Path] = []
    todo = [str(top)]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                if stat.S_ISLNK(mode):
                    continue
                if not mode & stat.S_IROTH:
                    found.append(Path(entry.path))
                elif stat.S_ISDIR(mode):
                    todo.append(entry.path)
    return found


def _make_shim(dest: Path) -> bool:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log.warning("no C compiler here: in gVisor sandboxes `ls DIR` and `stat` fail with "
                    "EINVAL (runsc 20221219's statx); install gcc and libc6-dev to fix it")
        return False
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    lib = tmp / SHIM_PATH.lstrip("/")
    lib.parent.mkdir(parents=True)
    (tmp / "shim.c").write_text(STATX_SHIM)
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(tmp / "shim.c")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not build the statx shim for gVisor sandboxes: %s",
                    done.stderr.strip()[-500:])
        return False
    (tmp / "shim.c").unlink()
    preload = Path("/etc/ld.so.preload")
    host = preload.read_text() if preload.exists() else ""
    (tmp / "etc").mkdir()
    (tmp / "etc" / "ld.so.preload").write_text(host + SHIM_PATH + "\n")
    tmp.rename(dest)
    return True


def _overlay_entry(lowers: list[str], upper: Path, work: Path, dest: Path) -> str:
    paths = [*lowers, str(upper), str(work), str(dest)]
    if any(c in p for p in paths for c in ":,\n"):
        raise IsolationUnavailable(
            f"The path {paths} has a ':' or ',' overlayfs cannot take; move the state "
            "directory to a plainer path."
        )
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    return f"overlay {_fstab_field(str(dest))} overlay {_fstab_field(options)} 0 0\n"


def _fstab_field(text: str) -> str:
    """A field of an fstab line: its blanks and backslashes as the octal escapes mount reads."""
    for c in "\\ \t":
        text = text.replace(c, f"\\{ord(c):03o}")
    return text


def visible_hidden(hidden: Sequence[Path]) -> list[Path]:
    """Hidden paths a sandbox or build container would otherwise see: those in what it gets
    of the host (SANDBOX_FROM_HOST)."""
    out: list[Path] = []
    for p in sorted({h.resolve() for h in hidden}, key=lambda p: len(p.parts)):
        if len(p.parts) < 2 or p.parts[1] not in SANDBOX_FROM_HOST:
            continue
        if p.exists() and not under(p, out):
            out.append(p)
    return out
