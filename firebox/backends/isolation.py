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


def bwrap_argv(argv: Sequence[str], sandbox: Sandbox) -> list[str]:
    back, hidden = _layout(sandbox)
    args = [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", sandbox.container_id, "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]
    args += ["--tmpfs", "/tmp"]
    for p in back:
        args += ["--ro-bind", str(p), str(p)]
    for p in hidden:
        args += ["--tmpfs", str(p)]
    for node in sandbox.devices:
        args += ["--dev-bind", node, node]
    root = str(sandbox.root.resolve())
    args += ["--bind", root, root, "--chdir", root, *sandbox.extra, "--", *argv]
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
    (bundle / "config.json").write_text(json.dumps(spec))
    return [
        "runsc", "--root", str(sandbox.runsc_root), "--network=host",
        "run", "--bundle", str(bundle), sandbox.container_id,
    ]


def launcher(mode: str, argv: Sequence[str], sandbox: Sandbox, env: dict[str, str]) -> list[str]:
    """The command line that runs argv under the given isolation."""
    if mode == PROCESS:
        return list(argv)
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
