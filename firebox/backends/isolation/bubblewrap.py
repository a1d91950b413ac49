"""The bubblewrap launch: the command that runs a namespaces container over its file view, and
the one that starts a sandbox's agent in its own root under bubblewrap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .image_root import HOST, host_exec, setpriv
from .view import CA_BUNDLE, Walls, file_view, under


def bwrap_argv(argv: Sequence[str], walls: Walls) -> list[str]:
    """The root is an empty tmpfs made read-only at the end, holding only the file view; or,
    for a registry image, the image's own root (writable: its writes go to the container's
    upper directory, gone with it)."""
    rooted = walls.image_root is not None
    args = [
        "bwrap", *(["--bind", str(walls.image_root), "/"] if rooted else []),
        "--dev", "/dev", "--proc", "/proc", "--perms", "01777", "--tmpfs", "/tmp",
        "--perms", "01777", "--tmpfs", "/dev/shm",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", walls.container_id, "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]
    binds: list[Path] = []
    made = {Path("/tmp"), Path("/dev"), Path("/proc")}
    for m in file_view(walls):
        # bubblewrap makes missing parents of a mount point 0700, which the container's user
        # could not pass through: make them 0755 first (those not inside a bound directory).
        for parent in reversed(Path(m.dest).parents[:-1]):
            if parent not in made and not under(parent, binds):
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
    if walls.block_network:
        args += ["--unshare-net"]
    root = str(walls.root.resolve())
    args += [*([] if rooted else ["--remount-ro", "/"]), "--chdir", root, *walls.extra]
    if walls.uid is not None:
        # bubblewrap starts as root (it binds paths only root may reach, the state directory
        # among them); setpriv becomes the container's user before anything of the container
        # runs. Changing uid from 0 clears every capability, and no_new_privs (bubblewrap's)
        # keeps setuid programs from giving any back.
        # In a registry image's root, the host's setpriv through the host's loader.
        prog = host_exec([HOST + setpriv()], image_libs=False) if rooted else ["setpriv"]
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                 *prog, f"--reuid={walls.uid}", f"--regid={walls.gid}",
                 *([f"--groups={','.join(map(str, walls.groups))}"] if walls.groups
                   else ["--clear-groups"]), "--inh-caps=-all"]
    return [*args, "--", *argv]


def sandbox_bwrap_argv(agent: Sequence[str], walls: Walls, rootfs: Path, env: dict[str, str],
                       hidden: Sequence[Path], runtime: Sequence[Path],
                       netns: str | None, host: Sequence[tuple[str, str]] = ()) -> list[str]:
    """A sandbox's root is its own overlay (rootfs), read-write; hidden paths masked, the
    agent's interpreter (runtime), the host's libraries for it (host: source, dest; in a
    registry image's root) and its volumes bound in."""
    inner = ["bwrap", "--bind", str(rootfs), "/", "--dev", "/dev", "--proc", "/proc",
             "--unshare-all", "--hostname", walls.container_id, "--cap-drop", "ALL",
             "--die-with-parent", "--new-session", "--clearenv"]
    if netns:
        inner.append("--share-net")  # the namespace nsenter put it in (launch.sandbox_argv)
    for k, v in env.items():
        inner += ["--setenv", k, v]
    for p in hidden:
        inner += ["--tmpfs", str(p)]
    for p in runtime:
        inner += ["--ro-bind", str(p), str(p)]
    for src, dest in host:
        inner += ["--ro-bind", src, dest]
    for mount_path, host_dir in walls.volumes.items():
        inner += ["--bind", str(host_dir), mount_path]
    if walls.ca_bundle is not None:
        inner += ["--ro-bind", str(walls.ca_bundle), CA_BUNDLE]
    return [*inner, "--chdir", "/", "--", *agent]
