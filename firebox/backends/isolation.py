"""How a container's process is launched: `process` (no isolation), `namespaces` (bubblewrap) or
`gvisor` (runsc), and what each lets the container see."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import firebox

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


def bwrap_argv(argv: Sequence[str], sandbox: Sandbox) -> list[str]:
    """The root is an empty tmpfs made read-only at the end, holding only: the system dirs,
    Python's own directories, the container's directory, its volumes and its devices."""
    hidden = _layout(sandbox)[1]
    args = [
        "bwrap", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", sandbox.container_id, "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]
    system = []
    for name in SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
            system.append(path)
    home = Path(os.environ.get("HOME") or "/root")
    if home != Path("/") and not _under(home, system):
        args += ["--tmpfs", str(home)]  # an empty, private home for caches
    wanted = [p for p in python_paths() if not _under(p, system) and not _under(p, hidden)]
    for p in wanted:
        if not _under(p, [q for q in wanted if q != p]):
            args += ["--ro-bind", str(p), str(p)]
    for p in hidden:  # what a bound directory holds that must stay invisible
        if _under(p, [*system, *wanted]):
            args += ["--tmpfs", str(p)]
    for node in sandbox.devices:
        args += ["--dev-bind", node, node]
    root = str(sandbox.root.resolve())
    args += ["--bind", root, root]
    for src, dest, ro in sandbox.image_binds:
        args += ["--ro-bind" if ro else "--bind", src, dest]
    for p in hidden:  # again: an image's overlay of a system dir shows the host's under it
        if sandbox.image_binds and _under(p, system):
            args += ["--tmpfs", str(p)]
    for mount_path, host_dir in sandbox.volumes.items():
        args += ["--bind", str(host_dir), mount_path]
    if sandbox.server_socket is not None:
        args += ["--bind", str(sandbox.server_socket), SOCKET]
    if sandbox.block_network:
        args += ["--unshare-net"]
    args += ["--remount-ro", "/", "--chdir", root, *sandbox.extra, "--", *argv]
    return args


def gvisor_argv(argv: Sequence[str], sandbox: Sandbox, env: dict[str, str]) -> list[str]:
    """Write an OCI bundle for runsc and return the command that runs it.

    The bundle keeps the host's network namespace (runsc --network=host) so the container can
    dial the control plane on loopback; gVisor's own netstack would need iptables and a veth.
    """
    assert sandbox.scratch is not None and sandbox.runsc_root is not None
    bundle = sandbox.scratch
    bundle.mkdir(parents=True, exist_ok=True)
    root = str(sandbox.root.resolve())
    mounts: list[dict[str, object]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
    ]
    back, hidden = _layout(sandbox)
    mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    mounts += [
        {"destination": str(p), "type": "bind", "source": str(p), "options": ["rbind", "ro"]}
        for p in back
    ]
    mounts += [{"destination": str(p), "type": "tmpfs", "source": "tmpfs"} for p in hidden]
    mounts += [
        {"destination": n, "type": "bind", "source": n, "options": ["rbind", "rw"]}
        for n in sandbox.devices
    ]
    mounts.append({"destination": root, "type": "bind", "source": root, "options": ["rbind", "rw"]})
    mounts += [{"destination": dest, "type": "bind", "source": src,
                "options": ["rbind", "ro" if ro else "rw"]}
               for src, dest, ro in sandbox.image_binds]
    mounts += [{"destination": str(p), "type": "tmpfs", "source": "tmpfs"} for p in hidden
               if sandbox.image_binds and _under(p, [Path(d) for _s, d, _r in
                                                     sandbox.image_binds])]
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items() if k != "FIREBOX_PARENT_PID"],
            "cwd": root,
            "capabilities": {k: [] for k in ("bounding", "effective", "permitted", "inheritable")},
            "noNewPrivileges": True,
        },
        "root": {"path": "/", "readonly": True},
        "hostname": sandbox.container_id,
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]},
    }
    if sandbox.cgroup:
        # runsc moves its sandbox and gofer processes out of the cgroup they start in unless
        # the spec names one: without this no memory or process limit would hold.
        spec["linux"]["cgroupsPath"] = sandbox.cgroup  # type: ignore[index]
    (bundle / "config.json").write_text(json.dumps(spec))
    return [
        "runsc", "--root", str(sandbox.runsc_root), "--network=host",
        "run", "--bundle", str(bundle), sandbox.container_id,
    ]


def launcher(mode: str, argv: Sequence[str], sandbox: Sandbox, env: dict[str, str]) -> list[str]:
    """The command line that runs argv under the given isolation."""
    if mode == PROCESS:
        return list(argv)
    if mode in (NAMESPACES, GVISOR) and sandbox.mount_lines:
        inner = (bwrap_argv(argv, sandbox) if mode == NAMESPACES
                 else gvisor_argv(argv, sandbox, env))
        script = " && ".join([*sandbox.mount_lines, 'exec "$@"'])
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                "firebox-image", *inner]
    if mode == NAMESPACES:
        return bwrap_argv(argv, sandbox)
    if mode == GVISOR:
        return gvisor_argv(argv, sandbox, env)
    raise IsolationUnavailable(f"unknown isolation {mode!r}")


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
            if host.is_symlink():
                if not dest.is_symlink() and not dest.exists():
                    dest.symlink_to(os.readlink(host))
                continue
            if not host.is_dir():
                continue
            dest.mkdir(exist_ok=True)
            if name in ("proc", "sys", "dev", "lost+found"):
                continue
            lowers = [str(layer / "upper" / name) for layer in self.layers
                      if (layer / "upper" / name).is_dir()]
            lowers.append(str(self.base / "empty") if name in NOT_FROM_HOST else str(host))
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


def _fstab_field(text: str) -> str:
    """A field of an fstab line: its blanks and backslashes as the octal escapes mount reads."""
    for c in "\\ \t":
        text = text.replace(c, f"\\{ord(c):03o}")
    return text


def _visible_hidden(hidden: Sequence[Path]) -> list[Path]:
    """Hidden paths a sandbox would otherwise see (those under /tmp and /run it never does)."""
    out: list[Path] = []
    for p in sorted({h.resolve() for h in hidden}, key=lambda p: len(p.parts)):
        if len(p.parts) > 1 and p.parts[1] in NOT_FROM_HOST:
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
    hidden = _visible_hidden(sb.hidden)
    env = {"PATH": SANDBOX_PATH, "HOME": "/root", **env}
    if mode == GVISOR:
        inner = _gvisor_sandbox(agent, sb, fs, env, hidden, cgroup, netns)
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
        for mount_path, host_dir in sb.volumes.items():
            inner += ["--bind", str(host_dir), mount_path]
        inner += ["--chdir", "/", "--", *agent]
    else:
        raise IsolationUnavailable(f"sandboxes run under {' or '.join(SANDBOX_MODES)}, "
                                   f"not {mode!r}")
    if netns and mode == GVISOR:
        # runsc 20221219 takes a namespace with /proc/sys/net/core/rmem_default for the host's
        # own and refuses it; since Linux 6.x every namespace has that file. Hidden from runsc
        # only, in the private mount namespace it starts in.
        mounts.append("mount -t tmpfs -o size=4k,ro firebox-netns /proc/sys/net/core")
    script = " && ".join([*mounts, 'exec "$@"'])
    enter = ["nsenter", f"--net={netns}"] if netns else []
    return [*enter, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            "firebox-sandbox", *inner]


def _gvisor_sandbox(agent: list[str], sb: Sandbox, fs: SandboxRoot, env: dict[str, str],
                    hidden: Sequence[Path], cgroup: str | None,
                    netns: str | None = None) -> list[str]:
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
