"""The command lines that start a container or a sandbox under its isolation mode: the network
namespace, the private mounts, the cgroups and the launcher (bubblewrap or runsc) around it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import sandbox_agent
from . import image_root
from .bubblewrap import bwrap_argv, sandbox_bwrap_argv
from .gvisor import HIDE_RMEM, gvisor_argv, sandbox_gvisor_argv
from .modes import GVISOR, NAMESPACES, PROCESS, SANDBOX_MODES, IsolationUnavailable
from .sandbox_root import SANDBOX_FROM_HOST, SandboxRoot, visible_hidden
from .view import CA_BUNDLE, Walls, trust_env

AGENT = Path(sandbox_agent.__file__)
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def launcher(mode: str, argv: Sequence[str], walls: Walls, env: dict[str, str]) -> list[str]:
    """The command line that runs argv under the given isolation, in walls.netns if set."""
    if mode == PROCESS:
        return list(argv)
    if mode not in (NAMESPACES, GVISOR):
        raise IsolationUnavailable(f"unknown isolation {mode!r}")
    inner = bwrap_argv(argv, walls) if mode == NAMESPACES else gvisor_argv(argv, walls, env)
    lines = list(walls.mount_lines)
    if mode == GVISOR and walls.netns:
        lines.append(HIDE_RMEM)
    if lines:
        script = " && ".join([*lines, 'exec "$@"'])
        inner = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                 "firebox-image", *inner]
    if walls.netns:
        inner = ["nsenter", f"--net={walls.netns}", *inner]
    return inner


def in_cgroup(argv: Sequence[str], procs_files: Sequence[Path]) -> list[str]:
    """Wrap argv so its process joins the cgroups before it runs (so before it can fork)."""
    if not procs_files:
        return list(argv)
    joins = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in procs_files)
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "firebox-container", *argv]


def sandbox_argv(mode: str, walls: Walls, fs: SandboxRoot, env: dict[str, str],
                 cgroup: str | None = None, netns: str | None = None) -> list[str]:
    """The command that mounts a sandbox's root and starts its agent under mode; the agent
    speaks on the command's stdin and stdout. No network: its own namespace with loopback only,
    unless netns names a prepared one (backends/sandbox_net.py) to run in instead.
    cgroup: the path (under each controller) of the cgroup the sandbox must stay in."""
    if mode not in SANDBOX_MODES:
        raise IsolationUnavailable(f"sandboxes run under {' or '.join(SANDBOX_MODES)}, "
                                   f"not {mode!r}")
    mounts = fs.prepare()
    python = str(Path(sys.executable).resolve())
    # The agent's source goes in on the command line: where firebox is installed (a /tmp
    # checkout, say) need not be visible inside the sandbox.
    agent = [python, "-I", "-S", "-c", AGENT.read_text()]
    hidden = visible_hidden(walls.hidden)
    # The agent's interpreter, read-only at its own path where the sandbox has no copy of it
    # (a Python installed under /root or /opt).
    prefix = Path(sys.base_prefix).resolve()
    runtime = [] if prefix.parts[1:2] and prefix.parts[1] in SANDBOX_FROM_HOST else [prefix]
    host: list[tuple[str, str]] = []  # (host path, where the sandbox sees it)
    points = fs.rootfs
    if fs.image_root:  # a registry image's root: the agent runs on the host's loader
        image_root.check_python()
        agent, hidden, runtime = image_root.host_exec(agent, image_libs=False), [], [prefix]
        host = [(top, image_root.HOST + top) for top in image_root.host_tops()]
        points = fs.base / "upper"  # mount points are made where the overlay's writes go
        image_root.mount_points(points, fs.image_root, [
            *((dest, True) for _src, dest in host), (str(prefix), True), ("/tmp", True),
            *((path, True) for path in walls.volumes)])
    trust: dict[str, str] = {}
    if walls.ca_bundle is not None:  # its mount point, in the root's own top directory
        point = points / CA_BUNDLE.lstrip("/")
        point.parent.mkdir(mode=0o755, exist_ok=True)
        point.touch()
        trust = trust_env(CA_BUNDLE)
    env = fs.python_env({"PATH": SANDBOX_PATH, "HOME": "/root", **trust, **env})
    if mode == GVISOR:
        inner = sandbox_gvisor_argv(agent, walls, fs.rootfs, env, hidden, runtime, cgroup, netns,
                                    host)
        if netns:
            mounts.append(HIDE_RMEM)
    else:
        inner = sandbox_bwrap_argv(agent, walls, fs.rootfs, env, hidden, runtime, netns, host)
    script = " && ".join([*mounts, 'exec "$@"'])
    enter = ["nsenter", f"--net={netns}"] if netns else []
    return [*enter, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            "firebox-sandbox", *inner]
