"""What a namespaces or gVisor container sees: its Walls (its directory, the
paths hidden from it, its devices and volumes) and the file view made of it, mount by mount."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .image_root import HOST, host_tops, mount_points
from .modes import NAMESPACES


@dataclass
class Walls:
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
    preload: Path | None = None  # a library every process loads (gVisor's statx shim)
    gid: int | None = None
    groups: Sequence[int] = ()  # supplementary groups (an image's user: the server socket's)
    ca_bundle: Path | None = None  # the certificates it trusts, bound at CA_BUNDLE (trust_env)
    # A registry image's root (image_root.py): the merged overlay that is its "/", the upper
    # directory its mount points are made in, and the image's layers under it.
    image_root: Path | None = None
    image_upper: Path | None = None
    image_lowers: Sequence[Path] = ()
    # A gVisor container restored from a stored memory snapshot (backends/stored.py): the
    # snapshot's directory, and where the snapshotted container saw its own directory (where
    # this one sees its own, so the restored process finds it where it was).
    restore_image: Path | None = None
    root_inside: Path | None = None

    def inside(self) -> str:
        """Where the container sees its own directory."""
        return str(self.root_inside or self.root.resolve())


def python_paths() -> list[Path]:
    """Directories the runtime needs to import firebox and the installed packages."""
    here = Path(__file__).parents[3]  # where the firebox package is
    paths = {Path(sys.prefix), Path(sys.base_prefix), here}
    paths.update(Path(p) for p in sys.path if p and Path(p).is_dir())
    return sorted(p.resolve() for p in paths)


def under(path: Path, parents: Sequence[Path]) -> bool:
    """Whether path is one of parents or inside one."""
    return any(path == p or p in path.parents for p in parents)


def _hidden_dirs(walls: Walls) -> list[Path]:
    """The hidden directories that exist, outermost first, none inside another: each is masked
    by an empty tmpfs, so nothing hidden shows through a directory bound in."""
    hidden: list[Path] = []
    for p in sorted({h.resolve() for h in walls.hidden}, key=lambda p: len(p.parts)):
        if p.exists() and not under(p, hidden):
            hidden.append(p)
    return hidden


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
    if any(not p.is_absolute() or under(p, taken) or p in (Path("/"), Path("/tmp"))
           for p in paths):
        return []
    return [str(p) for p in paths]


# Where a namespaces container finds the control plane's unix socket. Its channel goes over it,
# so a container with no network of its own (block_network) still reaches the control plane.
SOCKET = "/run/firebox/server.sock"


# Where a namespaces or gVisor container and a sandbox find the certificates they trust: the
# host's system ones and the authority firebox serves tunnels under (server/core/tunnels.py).
CA_BUNDLE = "/.firebox/ca-bundle.pem"
# Each client's own name for its trusted certificates: Python's ssl (urllib, httpx, aiohttp),
# requests, curl, and Node's extra ones.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


def trust_env(bundle: str) -> dict[str, str]:
    """The variables that point every usual client at bundle; an image's or a user's own
    settings of them are applied over these."""
    return dict.fromkeys(CA_VARIABLES, bundle)


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


def file_view(walls: Walls) -> list[Mount]:
    """What a namespaces or gVisor container sees over its empty root and its own /dev, /proc
    and /tmp: the system dirs, Python's own directories, its directory, its image, volumes and
    devices; the hidden directories and the host's secrets covered."""
    hidden = _hidden_dirs(walls)
    if walls.image_root is not None:
        return _image_root_view(walls, hidden)
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
    if home != Path("/") and not under(home, system):
        out.append(Mount("tmpfs", str(home), mode="1777"))  # an empty, private home for caches
    wanted = [p for p in python_paths() if not under(p, system) and not under(p, hidden)]
    for p in wanted:
        if not under(p, [q for q in wanted if q != p]):
            out.append(Mount("ro", str(p), str(p)))
    for p in hidden:  # what a bound directory holds that must stay invisible
        if under(p, [*system, *wanted]):
            out.append(Mount("tmpfs", str(p)))
    out += [Mount("dev", node, node) for node in walls.devices]
    out.append(Mount("rw", walls.inside(), str(walls.root.resolve())))
    out += [Mount("ro" if ro else "rw", dest, src) for src, dest, ro in walls.image_binds]
    for p in hidden:  # again: an image's overlay of a system dir shows the host's under it
        if walls.image_binds and under(p, system):
            out.append(Mount("tmpfs", str(p)))
    out += [Mount("rw", mount_path, str(host_dir))
            for mount_path, host_dir in walls.volumes.items()]
    for secret in host_secrets():
        out.append(Mount("tmpfs", str(secret)) if secret.is_dir()
                   else Mount("file", str(secret), _empty_file()))
    if walls.server_socket is not None:
        out.append(Mount("rw", SOCKET, str(walls.server_socket)))
    if walls.ca_bundle is not None:
        out.append(Mount("ro", CA_BUNDLE, str(walls.ca_bundle)))
    return out


def _image_root_view(walls: Walls, hidden: list[Path]) -> list[Mount]:
    """Over a registry image's root: the host's loader and libraries under image_root.HOST,
    Python's own directories at their paths, then what every container has."""
    out = [Mount("ro", HOST + top, top) for top in host_tops()]
    out += [Mount("tmpfs", HOST + str(p)) for p in hidden if under(p, [Path(t) for t in
                                                                     host_tops()])]
    wanted = [p for p in python_paths() if not under(p, hidden)]
    for p in wanted:
        if not under(p, [q for q in wanted if q != p]):
            out.append(Mount("ro", str(p), str(p)))
    for p in hidden:
        if under(p, wanted):
            out.append(Mount("tmpfs", str(p)))
    out += [Mount("dev", node, node) for node in walls.devices]
    out.append(Mount("rw", walls.inside(), str(walls.root.resolve())))
    out += [Mount("ro" if ro else "rw", dest, src) for src, dest, ro in walls.image_binds]
    out += [Mount("rw", mount_path, str(host_dir))
            for mount_path, host_dir in walls.volumes.items()]
    if walls.server_socket is not None:
        out.append(Mount("rw", SOCKET, str(walls.server_socket)))
    if walls.ca_bundle is not None:
        out.append(Mount("ro", CA_BUNDLE, str(walls.ca_bundle)))
    if walls.image_upper is not None:
        mount_points(walls.image_upper, walls.image_lowers,
                     [(m.dest, m.kind != "file" and Path(m.src or "/").is_dir()
                       or m.kind == "tmpfs") for m in out])
    return out
