"""How a container's process is launched: `process` (no isolation), `namespaces` (bubblewrap) or
`gvisor` (runsc), and what each lets the container see."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import firebox

log = logging.getLogger("firebox.backends.isolation")

PROCESS, NAMESPACES, GVISOR = "process", "namespaces", "gvisor"
MODES = (PROCESS, NAMESPACES, GVISOR)
ENV = "FIREBOX_ISOLATION"  # the server's default for functions that don't choose


class IsolationUnavailable(RuntimeError):
    pass


def default_mode() -> str:
    """FIREBOX_ISOLATION when set, else namespaces where bubblewrap is installed, else process."""
    chosen = os.environ.get(ENV)
    if chosen:
        return check_mode(chosen)
    return NAMESPACES if shutil.which("bwrap") else PROCESS


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise IsolationUnavailable(
            f"isolation={mode!r} is not one of {', '.join(MODES)}; pick one of those."
        )
    if mode == NAMESPACES and shutil.which("bwrap") is None:
        raise IsolationUnavailable(
            "isolation='namespaces' needs bubblewrap, which is not installed here; "
            "install the Debian package bubblewrap or choose isolation='process'."
        )
    if mode == GVISOR and shutil.which("runsc") is None:
        raise IsolationUnavailable(
            "isolation='gvisor' needs gVisor's runsc, which is not installed here; "
            "install the Debian package runsc or choose isolation='namespaces'."
        )
    return mode


@dataclass
class Sandbox:
    """What one container may see and touch."""

    container_id: str
    root: Path  # the container's own directory, read-write
    hidden: Sequence[Path]  # never visible: the server's state directory, the client config
    devices: Sequence[str] = ()  # device nodes to pass through (its GPUs)
    scratch: Path | None = None  # where a launcher may keep files of its own (gVisor's bundle)
    runsc_root: Path | None = None
    extra: list[str] = field(default_factory=list)  # more bubblewrap arguments
    cgroup: str | None = None  # its cgroup path under each controller, for runsc to stay in
    volumes: dict[str, Path] = field(default_factory=dict)  # mount path -> its working copy
    server_socket: Path | None = None  # the control plane's unix socket, bound in at SOCKET
    block_network: bool = False  # a network namespace of its own: loopback only
    # An image's layers: overlayfs mounts made in a private mount namespace before bubblewrap
    # starts, and the bubblewrap binds that put them (and its Python dirs) in place.
    mount_lines: list[str] = field(default_factory=list)
    image_binds: list[tuple[str, str, bool]] = field(default_factory=list)  # src, dest, ro
    netns: str | None = None  # a network namespace of its own with egress (backends/netns.py)
    uid: int | None = None  # the user it runs as; None: root (sandboxes: root of gVisor's kernel)
    gid: int | None = None


def python_paths() -> list[Path]:
    """Directories the runtime needs to import firebox and the installed packages."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(firebox.__file__).parent.parent}
    paths.update(Path(p) for p in sys.path if p and Path(p).is_dir())
    return sorted(p.resolve() for p in paths)


def _under(path: Path, parents: Sequence[Path]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def _layout(sandbox: Sandbox) -> tuple[list[Path], list[Path]]:
    """(directories bound back read-only, directories masked by an empty tmpfs), in the order
    they are mounted after /tmp is masked. Python's own directories under /tmp (a venv there)
    come back, then the hidden directories are masked, so nothing hidden shows through them."""
    hidden: list[Path] = []
    for p in sorted({h.resolve() for h in sandbox.hidden}, key=lambda p: len(p.parts)):
        if p.exists() and not _under(p, hidden):
            hidden.append(p)
    tmp = [Path("/tmp")]
    wanted = [p for p in python_paths()
              if p not in tmp and _under(p, tmp) and not _under(p, hidden)]
    back = [p for p in wanted if not _under(p, [q for q in wanted if q != p])]
    return back, hidden


# What a namespaces container sees of the host: the system's programs, libraries and
# configuration, read-only. Home directories, /var, /srv, /opt and the rest are not there.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")


def volumes_at_path(mode: str, volumes: dict[str, str]) -> list[str]:
    """The mount paths a container's volumes can appear at, as user code expects: under
    namespaces, where the root is ours to shape, and only outside the directories it binds
    read-only. Otherwise none: the runtime keeps the copies under the container's directory."""
    if mode != NAMESPACES or not volumes:
        return []
    taken = [Path("/") / d for d in SYSTEM_DIRS] + python_paths()
    paths = [Path(m) for m in volumes]
    if any(not p.is_absolute() or _under(p, taken) or p in (Path("/"), Path("/tmp"))
           for p in paths):
        return []
    return [str(p) for p in paths]


# Where a namespaces container finds the control plane's unix socket. Its channel goes over it,
# so a container with no network of its own (block_network) still reaches the control plane.
SOCKET = "/run/firebox/server.sock"


# Containers run as this user (nobody), never as root: the host's files that are not readable by
# everyone (/etc/shadow, other users' homes) stay closed even where they are visible, and what it
# writes on the host (its directory, its volumes' copies) is owned by it.
CONTAINER_UID = CONTAINER_GID = 65534
EMPTY_FILE = Path("/run/firebox-empty")  # bound over the host's secret files


@functools.cache
def host_secrets() -> tuple[Path, ...]:
    """What under /etc is not readable by everyone (/etc/shadow, /etc/gshadow, private keys):
    covered in every container, though its user could not read it anyway."""
    found: list[Path] = []
    for top, dirs, files in os.walk("/etc"):
        for name in list(dirs):
            path = Path(top) / name
            with contextlib.suppress(OSError):
                if not path.is_symlink() and not path.stat().st_mode & stat.S_IROTH:
                    found.append(path)
                    dirs.remove(name)  # hidden whole
        for name in files:
            path = Path(top) / name
            with contextlib.suppress(OSError):
                mode = path.lstat().st_mode
                if stat.S_ISREG(mode) and not mode & stat.S_IROTH:
                    found.append(path)
    return tuple(sorted(found))


def _empty_file() -> str:
    if not EMPTY_FILE.exists():
        EMPTY_FILE.touch(mode=0o444)
    return str(EMPTY_FILE)


@dataclass
class Mount:
    """One step of a container's file view, in order: kind is ro, rw, dev (a bind), tmpfs (an
    empty directory), symlink (src is its target) or file (an empty file over dest)."""

    kind: str
    dest: str
    src: str = ""
    mode: str = "0755"  # a tmpfs's


def file_view(sandbox: Sandbox) -> list[Mount]:
    """What a namespaces or gVisor container sees over its empty root and its own /dev, /proc
    and /tmp: the system dirs, Python's own directories, its directory, its image, volumes and
    devices; the hidden directories and the host's secrets covered."""
    hidden = _layout(sandbox)[1]
    out: list[Mount] = []
    system = []
    for name in SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            out.append(Mount("symlink", str(path), os.readlink(path)))
        elif path.is_dir():
            out.append(Mount("ro", str(path), str(path)))
            system.append(path)
    home = Path(os.environ.get("HOME") or "/root")
    if home != Path("/") and not _under(home, system):
        out.append(Mount("tmpfs", str(home), mode="1777"))  # an empty, private home for caches
    wanted = [p for p in python_paths() if not _under(p, system) and not _under(p, hidden)]
    for p in wanted:
        if not _under(p, [q for q in wanted if q != p]):
            out.append(Mount("ro", str(p), str(p)))
    for p in hidden:  # what a bound directory holds that must stay invisible
        if _under(p, [*system, *wanted]):
            out.append(Mount("tmpfs", str(p)))
    out += [Mount("dev", node, node) for node in sandbox.devices]
    root = str(sandbox.root.resolve())
    out.append(Mount("rw", root, root))
    out += [Mount("ro" if ro else "rw", dest, src) for src, dest, ro in sandbox.image_binds]
    for p in hidden:  # again: an image's overlay of a system dir shows the host's under it
        if sandbox.image_binds and _under(p, system):
            out.append(Mount("tmpfs", str(p)))
    out += [Mount("rw", mount_path, str(host_dir))
            for mount_path, host_dir in sandbox.volumes.items()]
    for secret in host_secrets():
        out.append(Mount("tmpfs", str(secret)) if secret.is_dir()
                   else Mount("file", str(secret), _empty_file()))
    if sandbox.server_socket is not None:
        out.append(Mount("rw", SOCKET, str(sandbox.server_socket)))
    return out


def bwrap_argv(argv: Sequence[str], sandbox: Sandbox) -> list[str]:
    """The root is an empty tmpfs made read-only at the end, holding only the file view."""
    args = [
        "bwrap", "--dev", "/dev", "--proc", "/proc", "--perms", "01777", "--tmpfs", "/tmp",
        "--perms", "01777", "--tmpfs", "/dev/shm",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", sandbox.container_id, "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]
    binds: list[Path] = []
    made = {Path("/tmp"), Path("/dev"), Path("/proc")}
    for m in file_view(sandbox):
        # bubblewrap makes missing parents of a mount point 0700, which the container's user
        # could not pass through: make them 0755 first (those not inside a bound directory).
        for parent in reversed(Path(m.dest).parents[:-1]):
            if parent not in made and not _under(parent, binds):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        if m.kind in ("ro", "rw", "dev"):
            binds.append(Path(m.dest))
        made.add(Path(m.dest))
        if m.kind == "symlink":
            args += ["--symlink", m.src, m.dest]
        elif m.kind == "tmpfs":
            args += ["--perms", m.mode, "--tmpfs", m.dest]
        else:
            flag = {"ro": "--ro-bind", "file": "--ro-bind", "rw": "--bind", "dev": "--dev-bind"}
            args += [flag[m.kind], m.src, m.dest]
    if sandbox.block_network:
        args += ["--unshare-net"]
    root = str(sandbox.root.resolve())
    args += ["--remount-ro", "/", "--chdir", root, *sandbox.extra]
    if sandbox.uid is not None:
        # bubblewrap starts as root (it binds paths only root may reach, the state directory
        # among them); setpriv becomes the container's user before anything of the container
        # runs. Changing uid from 0 clears every capability, and no_new_privs (bubblewrap's)
        # keeps setuid programs from giving any back.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                 "setpriv", f"--reuid={sandbox.uid}", f"--regid={sandbox.gid}",
                 "--clear-groups", "--inh-caps=-all"]
    return [*args, "--", *argv]


def gvisor_argv(argv: Sequence[str], sandbox: Sandbox, env: dict[str, str]) -> list[str]:
    """Write an OCI bundle for runsc and return the command that runs it: the same file view as
    bubblewrap's over an empty read-only root, the container's user, and its network namespace
    (gVisor's own netstack on the veth) or none (loopback only). The control plane is reached
    over its unix socket (runsc --host-uds=open)."""
    assert sandbox.scratch is not None and sandbox.runsc_root is not None
    bundle = sandbox.scratch
    skeleton = bundle / "rootfs"
    skeleton.mkdir(parents=True, exist_ok=True)
    mounts: list[dict[str, object]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["mode=1777"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
    ]
    for m in file_view(sandbox):
        # A read-only root takes no new mount points: each is made in the skeleton first,
        # its parents passable by the container's user.
        target = skeleton / m.dest.lstrip("/")
        for parent in reversed([target, *target.parents]):
            if parent == target and m.kind not in ("tmpfs",) and not Path(m.src).is_dir():
                break
            if parent.is_relative_to(skeleton) and not parent.exists():
                parent.mkdir()
                parent.chmod(0o755)
        if m.kind == "symlink":
            if not target.is_symlink():
                target.symlink_to(m.src)
            continue
        if not target.exists():
            target.touch()
        if m.kind == "tmpfs":
            mounts.append({"destination": m.dest, "type": "tmpfs", "source": "tmpfs",
                           "options": [f"mode={m.mode}"]})
        else:
            mode = "ro" if m.kind in ("ro", "file") else "rw"
            mounts.append({"destination": m.dest, "type": "bind", "source": m.src,
                           "options": ["rbind", mode]})
    for d in ("proc", "dev", "sys", "tmp"):
        (skeleton / d).mkdir(exist_ok=True)
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    namespaces.append({"type": "network", "path": sandbox.netns} if sandbox.netns
                      else {"type": "network"})
    uid = 0 if sandbox.uid is None else sandbox.uid
    gid = 0 if sandbox.gid is None else sandbox.gid
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items() if k != "FIREBOX_PARENT_PID"],
            "cwd": str(sandbox.root.resolve()),
            "capabilities": {k: [] for k in ("bounding", "effective", "permitted", "inheritable")},
            "noNewPrivileges": True,
        },
        "root": {"path": str(skeleton), "readonly": True},
        "hostname": sandbox.container_id,
        "mounts": mounts,
        "linux": {"namespaces": namespaces},
    }
    if sandbox.cgroup:
        # runsc moves its sandbox and gofer processes out of the cgroup they start in unless
        # the spec names one: without this no memory or process limit would hold.
        spec["linux"]["cgroupsPath"] = sandbox.cgroup  # type: ignore[index]
    (bundle / "config.json").write_text(json.dumps(spec))
    return [
        "runsc", "--root", str(sandbox.runsc_root),
        "--network=sandbox" if sandbox.netns else "--network=none", "--host-uds=open",
        "run", "--bundle", str(bundle), sandbox.container_id,
    ]


# runsc 20221219 takes a network namespace with /proc/sys/net/core/rmem_default for the host's
# own and refuses it; since Linux 6.x every namespace has that file. Hidden from runsc only, in
# the private mount namespace it starts in.
HIDE_RMEM = "mount -t tmpfs -o size=4k,ro firebox-netns /proc/sys/net/core"


def launcher(mode: str, argv: Sequence[str], sandbox: Sandbox, env: dict[str, str]) -> list[str]:
    """The command line that runs argv under the given isolation, in sandbox.netns if set."""
    if mode == PROCESS:
        return list(argv)
    if mode not in (NAMESPACES, GVISOR):
        raise IsolationUnavailable(f"unknown isolation {mode!r}")
    inner = bwrap_argv(argv, sandbox) if mode == NAMESPACES else gvisor_argv(argv, sandbox, env)
    lines = list(sandbox.mount_lines)
    if mode == GVISOR and sandbox.netns:
        lines.append(HIDE_RMEM)
    if lines:
        script = " && ".join([*lines, 'exec "$@"'])
        inner = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                 "firebox-image", *inner]
    if sandbox.netns:
        inner = ["nsenter", f"--net={sandbox.netns}", *inner]
    return inner


def in_cgroup(argv: Sequence[str], procs_files: Sequence[Path]) -> list[str]:
    """Wrap argv so its process joins the cgroups before it runs (so before it can fork)."""
    if not procs_files:
        return list(argv)
    joins = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in procs_files)
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "firebox-container", *argv]


# ---- sandboxes: a long-lived container with a writable root, driven by sandbox_agent ----------

SANDBOX_MODES = (NAMESPACES, GVISOR)
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
AGENT = Path(__file__).with_name("sandbox_agent.py")
# Capabilities of root inside gVisor: they act on gVisor's kernel, never the host's.
GVISOR_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
               "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sandbox_default_mode() -> str:
    """The operator's choice (FIREBOX_SANDBOX_ISOLATION), else gVisor where runsc is
    installed, else bubblewrap namespaces."""
    chosen = os.environ.get("FIREBOX_SANDBOX_ISOLATION")
    if chosen:
        if chosen not in SANDBOX_MODES:
            raise IsolationUnavailable(f"FIREBOX_SANDBOX_ISOLATION={chosen!r}: sandboxes run "
                                       f"under {' or '.join(SANDBOX_MODES)}.")
        tool = "runsc" if chosen == GVISOR else "bwrap"
        if not shutil.which(tool):
            raise IsolationUnavailable(f"FIREBOX_SANDBOX_ISOLATION={chosen} needs {tool}, which "
                                       "is not installed; scripts/install.sh installs it.")
        return chosen
    if shutil.which("runsc"):
        return GVISOR
    if shutil.which("bwrap"):
        return NAMESPACES
    raise IsolationUnavailable(
        "Sandboxes need gVisor (Debian package runsc) or bubblewrap (package bubblewrap); "
        "install one of them."
    )


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

    @property
    def rootfs(self) -> Path:
        return self.base / "rootfs"

    def prepare(self) -> list[str]:
        """Make the skeleton and return the shell lines that mount its overlays."""
        for part in ("rootfs", "upper", "work", "empty"):
            (self.base / part).mkdir(parents=True, exist_ok=True)
        for layer in reversed(self.layers):  # files and directories made at "/" in a snapshot
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
            paths = [*lowers, str(upper), str(work), str(dest)]
            if any(c in p for p in paths for c in ":,\n"):
                raise IsolationUnavailable(
                    f"The path {paths} has a ':' or ',' overlayfs cannot take; move the state "
                    "directory to a plainer path."
                )
            options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
            entries.append(f"overlay {_fstab_field(str(dest))} overlay "
                           f"{_fstab_field(options)} 0 0\n")
        # One mount process for them all: a `mount` apiece cost about 4 ms each.
        fstab = self.base / "fstab"
        fstab.write_text("".join(entries))
        return [f"mount --all --fstab {shlex.quote(str(fstab))}"]

    def mounted_dirs(self) -> list[str]:
        """Top-level directories that are overlays: a snapshot takes their upper directories."""
        return sorted(p.name for p in (self.base / "upper").iterdir())


def sandbox_base(directory: Path, gvisor: bool) -> list[Path]:
    """The layers every sandbox has over the host's directories, made once per server under
    directory: whiteouts for what of /etc and /var is not readable by everyone, /etc/shadow and
    /etc/gshadow with no passwords, and under gVisor the statx shim (where a C compiler is
    installed). Newest first, as SandboxRoot.masks."""
    with _base_lock:
        mask, shim = directory / "mask", directory / "gvisor"
        if not mask.exists():
            _make_mask(mask)
        if gvisor and not shim.exists() and directory not in _no_shim and not _make_shim(shim):
            _no_shim.add(directory)  # said once in the log; not tried for every sandbox
        return [shim, mask] if gvisor and shim.exists() else [mask]


def _make_mask(dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for top in ("/etc", "/var"):
        for path in _unreadable(Path(top)):
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
    (tmp / "etc").mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)


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
        if p.exists() and not _under(p, out):
            out.append(p)
    return out


def sandbox_argv(mode: str, sb: Sandbox, fs: SandboxRoot, env: dict[str, str],
                 cgroup: str | None = None, netns: str | None = None) -> list[str]:
    """The command that mounts a sandbox's root and starts its agent under mode; the agent
    speaks on the command's stdin and stdout. No network: its own namespace with loopback only,
    unless netns names a prepared one (backends/sandbox_net.py) to run in instead.
    cgroup: the path (under each controller) of the cgroup the sandbox must stay in."""
    mounts = fs.prepare()
    python = str(Path(sys.executable).resolve())
    # The agent's source goes in on the command line: where firebox is installed (a /tmp
    # checkout, say) need not be visible inside the sandbox.
    agent = [python, "-I", "-S", "-c", AGENT.read_text()]
    hidden = visible_hidden(sb.hidden)
    # The agent's interpreter, read-only at its own path where the sandbox has no copy of it
    # (a Python installed under /root or /opt).
    prefix = Path(sys.base_prefix).resolve()
    runtime = [] if prefix.parts[1:2] and prefix.parts[1] in SANDBOX_FROM_HOST else [prefix]
    env = {"PATH": SANDBOX_PATH, "HOME": "/root", **env}
    if mode == GVISOR:
        inner = _gvisor_sandbox(agent, sb, fs, env, hidden, cgroup, netns, runtime)
    elif mode == NAMESPACES:
        inner = ["bwrap", "--bind", str(fs.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
                 "--unshare-all", "--hostname", sb.container_id, "--cap-drop", "ALL",
                 "--die-with-parent", "--new-session", "--clearenv"]
        if netns:
            inner.append("--share-net")  # the namespace nsenter put it in, below
        for k, v in env.items():
            inner += ["--setenv", k, v]
        for p in hidden:
            inner += ["--tmpfs", str(p)]
        for p in runtime:
            inner += ["--ro-bind", str(p), str(p)]
        for mount_path, host_dir in sb.volumes.items():
            inner += ["--bind", str(host_dir), mount_path]
        inner += ["--chdir", "/", "--", *agent]
    else:
        raise IsolationUnavailable(f"sandboxes run under {' or '.join(SANDBOX_MODES)}, "
                                   f"not {mode!r}")
    if netns and mode == GVISOR:
        mounts.append(HIDE_RMEM)
    script = " && ".join([*mounts, 'exec "$@"'])
    enter = ["nsenter", f"--net={netns}"] if netns else []
    return [*enter, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            "firebox-sandbox", *inner]


def _gvisor_sandbox(agent: list[str], sb: Sandbox, fs: SandboxRoot, env: dict[str, str],
                    hidden: Sequence[Path], cgroup: str | None,
                    netns: str | None = None, runtime: Sequence[Path] = ()) -> list[str]:
    assert sb.scratch is not None and sb.runsc_root is not None
    sb.scratch.mkdir(parents=True, exist_ok=True)
    mounts: list[dict[str, object]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
    ]
    # runsc puts a tmpfs of its own on /tmp unless the spec mounts something there.
    mounts.append({"destination": "/tmp", "type": "bind", "source": str(fs.rootfs / "tmp"),
                   "options": ["rbind", "rw"]})
    mounts += [{"destination": str(p), "type": "tmpfs", "source": "tmpfs"} for p in hidden]
    mounts += [{"destination": str(p), "type": "bind", "source": str(p),
                "options": ["rbind", "ro"]} for p in runtime]
    mounts += [{"destination": path, "type": "bind", "source": str(local),
                "options": ["rbind", "rw"]} for path, local in sb.volumes.items()]
    caps = {k: GVISOR_CAPS for k in ("bounding", "effective", "permitted")}
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": agent,
            "env": [f"{k}={v}" for k, v in env.items()], "cwd": "/",
            "capabilities": caps, "noNewPrivileges": True,
        },
        "root": {"path": str(fs.rootfs), "readonly": False},
        "hostname": sb.container_id,
        "mounts": mounts,
        # With a namespace, gVisor's netstack takes over the veth there, address and routes.
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
                  + [{"type": "network", "path": netns} if netns else {"type": "network"}]},
    }
    if cgroup:
        # runsc moves its sandbox and gofer processes out of the cgroup they were started in
        # unless the spec names one: without this, no memory or process limit would hold.
        spec["linux"]["cgroupsPath"] = cgroup  # type: ignore[index]
    (sb.scratch / "config.json").write_text(json.dumps(spec))
    return ["runsc", "--root", str(sb.runsc_root),
            "--network=sandbox" if netns else "--network=none",
            "run", "--bundle", str(sb.scratch), sb.container_id]
