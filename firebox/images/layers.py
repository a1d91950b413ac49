"""What an image's layers look like on disk, and how a container sees them.

A layer is a directory named by its hash, holding any of:
  python/         a `--target` directory of Python packages or local modules (on PYTHONPATH)
  upper/<top>     files under a top-level directory of the host (/usr, /etc, /var, /root, ...)
  root/<top>      top-level entries the host does not have (/app, /data, ...)
  rootfs/         a registry image's layer, or a later step's over one: a whole root's
                  changes, overlayfs whiteouts and all (such an image is the container's root)
  oci.json        what a from_registry step pulled (its layers are the image's first ones)
Under namespaces or gvisor isolation the container gets one overlayfs per top-level directory (the
layers, newest first, over the host's directory for the system dirs), each with an upper
directory of its own that vanishes with the container; python/ dirs are bound read-only.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PY_MOUNT = "/.image/python"  # where a namespaces container sees the layers' python/ dirs
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
NEVER = {"proc", "sys", "dev", "tmp", "run", "lost+found", ".image"}


@dataclass
class View:
    """What a container with an image gets: environment, overlay mounts and bwrap binds."""

    env: dict[str, str] = field(default_factory=dict)
    mount_lines: list[str] = field(default_factory=list)  # run in a private mount namespace
    binds: list[tuple[str, str, bool]] = field(default_factory=list)  # source, dest, read-only
    has_files: bool = False  # layers with files at absolute paths (only namespaces shows them)
    root: Path | None = None  # a registry image's merged root, its upper dir and lowers
    upper: Path | None = None
    lowers: list[Path] = field(default_factory=list)


def root_layers(layers: list[Path]) -> list[Path]:
    """A registry image's layers' rootfs/ dirs, newest first: the overlay that is its root."""
    return [d / "rootfs" for d in reversed(layers) if (d / "rootfs").is_dir()]


def overlay(layers: Sequence[Path], scratch: Path) -> tuple[str, Path, Path]:
    """The mount line of the image's root over layers (rootfs/ dirs, newest first), its merged
    directory and the upper one that takes the container's writes."""
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    lowers = [str(p) for p in layers] or [str(scratch / "empty")]
    (scratch / "empty").mkdir(exist_ok=True)
    if any(c in p for p in [*lowers, str(scratch)] for c in ":,\n"):
        raise ValueError(f"an image path has a ':' or ',' that overlayfs cannot take: {lowers}")
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    return (f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(merged))}",
            merged, upper)


def rooted_view(layers: list[Path], env: dict[str, str], scratch: Path) -> View:
    """For a registry image under bubblewrap or gVisor: its layers as the whole root, its
    python/ dirs (pip_install over it) bound at PY_MOUNT/N and first on PYTHONPATH."""
    lowers = root_layers(layers)
    line, merged, upper = overlay(lowers, scratch)
    view = View(env=dict(env), mount_lines=[line], has_files=True, root=merged, upper=upper,
                lowers=lowers)
    py = python_dirs(layers)
    inside = [f"{PY_MOUNT}/{i}" for i in range(len(py))]
    view.binds = [(str(host), dest, True) for host, dest in zip(py, inside, strict=True)]
    with_python(view.env, inside,
                 [f"{d}/bin" for p, d in zip(py, inside, strict=True) if (p / "bin").is_dir()])
    return view


def python_dirs(layers: list[Path]) -> list[Path]:
    """The layers' python/ dirs, newest first: the order PYTHONPATH searches them."""
    return [d / "python" for d in reversed(layers) if (d / "python").is_dir()]


def top_dirs(layers: list[Path]) -> dict[str, list[Path]]:
    """Top-level name -> the layers' directories for it, newest first."""
    out: dict[str, list[Path]] = {}
    for layer in reversed(layers):
        for part in ("upper", "root"):
            base = layer / part
            if not base.is_dir():
                continue
            for entry in sorted(base.iterdir()):
                if entry.name not in NEVER:
                    out.setdefault(entry.name, []).append(entry)
    return out


def with_python(env: dict[str, str], paths: list[str], bins: list[str]) -> None:
    """Put the layers' python/ dirs (as the container sees them) first on PYTHONPATH, and
    their bin/ dirs first on PATH."""
    if paths:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    if bins:
        env["PATH"] = os.pathsep.join(bins + [env.get("PATH") or os.defpath])


def process_view(layers: list[Path], env: dict[str, str]) -> View:
    """No isolation: only the Python layers (by PYTHONPATH, PATH) apply; files the image puts
    at absolute paths (apt packages, run_commands output, copies) are not visible."""
    view = View(env=dict(env), has_files=bool(top_dirs(layers)))
    py = python_dirs(layers)
    with_python(view.env, [str(p) for p in py],
                 [str(p / "bin") for p in py if (p / "bin").is_dir()])
    return view


def isolated_view(layers: list[Path], env: dict[str, str], scratch: Path,
                  python_at_host_path: bool = False) -> View:
    """For bubblewrap and gVisor. python_at_host_path: bind the python/ dirs where they are on
    the host (gVisor's read-only root cannot take new top-level mount points)."""
    view = View(env=dict(env))
    py = python_dirs(layers)
    inside = ([str(p) for p in py] if python_at_host_path
              else [f"{PY_MOUNT}/{i}" for i in range(len(py))])
    for host, dest in zip(py, inside, strict=True):
        view.binds.append((str(host), dest, True))
    with_python(view.env, inside,
                 [f"{d}/bin" for p, d in zip(py, inside, strict=True) if (p / "bin").is_dir()])
    for name, dirs in top_dirs(layers).items():
        view.has_files = True
        dest = f"/{name}"
        newest = dirs[0]
        if not newest.is_dir() or newest.is_symlink():
            view.binds.append((str(newest), dest, True))
            continue
        lowers = [str(d) for d in dirs if d.is_dir() and not d.is_symlink()]
        host = Path(dest)
        system = name in SYSTEM_DIRS and host.is_dir() and not host.is_symlink()
        if system:
            lowers.append(dest)
        upper, work, merged = (scratch / part / name for part in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        if any(c in p for p in [*lowers, str(scratch)] for c in ":,\n"):
            raise ValueError(f"an image path has a ':' or ',' that overlayfs cannot take: {lowers}")
        view.mount_lines.append(
            f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(merged))}"
        )
        # System dirs stay read-only as without an image; the others are the container's own.
        view.binds.append((str(merged), dest, system))
    return view
