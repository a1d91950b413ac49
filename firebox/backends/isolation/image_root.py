"""Containers whose root is a registry image: the image's layers as one overlay at "/", and
firebox's runtime (the server's Python, its packages) bound in beside it. The runtime's
interpreter is the host's, so it runs through the host's own dynamic loader and libraries
(bound under HOST): the image needs no glibc and no Python of its own, and the programs the
function starts are the image's, with the image's libraries."""

from __future__ import annotations

import os
import struct
import sys
import sysconfig
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .modes import GVISOR, IsolationUnavailable

HOST = "/.firebox/host"  # where a container of a registry image sees the host's libraries
# Where the runtime also looks for libraries, after the host's: the image's own (CUDA's too),
# for what the function's packages load that the host lacks.
IMAGE_LIBS = ("/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
              "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib",
              "/usr/local/cuda/lib64", "/usr/local/nvidia/lib64")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PT_INTERP = 3


@cache
def host_loader() -> Path:
    """The dynamic loader the server's Python was linked for (its ELF PT_INTERP)."""
    exe = Path(sys.executable).resolve()
    with exe.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise IsolationUnavailable(f"{exe} is not a 64-bit ELF program: registry images "
                                       "need a server whose Python is one")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        for n in range(phnum):
            f.seek(phoff + n * phentsize)
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack(
                "<IIQQQQ", f.read(40))
            if p_type == PT_INTERP:
                f.seek(p_offset)
                return Path(f.read(p_filesz).rstrip(b"\0").decode()).resolve()
    raise IsolationUnavailable(f"{exe} names no dynamic loader; registry images need a "
                               "dynamically linked Python on the server")


@cache
def host_lib_dirs() -> tuple[str, ...]:
    """The host's library directories, resolved: where its loader finds libc, libssl, ..."""
    arch = sysconfig.get_config_var("MULTIARCH")
    names = [f"/lib/{arch}", f"/usr/lib/{arch}"] if arch else []
    out: list[str] = [str(host_loader().parent)]
    for name in [*names, "/lib64", "/usr/lib64", "/lib", "/usr/lib"]:
        real = os.path.realpath(name)
        if os.path.isdir(real) and real not in out:
            out.append(real)
    return tuple(out)


def host_tops() -> list[str]:
    """The host's top directories holding its loader, libraries and setpriv: bound under HOST."""
    tops = {"/" + Path(d).parts[1] for d in [*host_lib_dirs(), setpriv()]}
    return sorted(tops)


def setpriv() -> str:
    return os.path.realpath("/usr/bin/setpriv")


def check_python() -> None:
    """A server whose Python lives in the system directories (/usr) cannot bring it into an
    image's root, where /usr is the image's."""
    for p in (sys.base_prefix, sys.prefix):
        top = Path(p).resolve().parts[1:2]
        if top and top[0] in ("usr", "bin", "lib", "lib64", "etc", "sbin"):
            raise IsolationUnavailable(
                f"Registry images need the server's Python outside the system directories "
                f"(it is at {Path(p).resolve()}): run the server from a Python installed under "
                "/opt or a home directory (pyenv, uv python install) or a venv made from one."
            )


def host_exec(argv: Sequence[str], image_libs: bool = True) -> list[str]:
    """argv (a host program at its host path) run through the host's loader and libraries."""
    # Python's own library directory first: a path given to the loader is searched before the
    # program's RUNPATH, and the host may have another libpython of the same version.
    own = sysconfig.get_config_var("LIBDIR")
    dirs = [own] if own and not own.startswith(("/usr/", "/lib")) else []
    dirs += [HOST + d for d in host_lib_dirs()]
    if image_libs:
        dirs += IMAGE_LIBS
    return [HOST + str(host_loader()), "--library-path", ":".join(dirs), *argv]


def mount_points(upper: Path, lowers: Sequence[Path], dests: Sequence[tuple[str, bool]]) -> None:
    """Make each mount point (dest, is a directory) in the overlay's upper directory, with
    parents everyone may pass: the container's user must reach the runtime under /root, say,
    which an image keeps 0700."""
    for dest, is_dir in dests:
        rel = Path(dest.lstrip("/"))
        here = upper
        for part in rel.parts[:-1]:
            here = here / part
            if not here.exists():
                here.mkdir()
                here.chmod(0o755)
        target = upper / rel
        if target.exists() or target.is_symlink():
            continue
        if any((low / rel).is_symlink() for low in lowers):
            continue  # the image's symbolic link: bubblewrap follows it
        if is_dir:
            target.mkdir()
            target.chmod(0o755)
        else:
            target.touch()


def image_user(lowers: Sequence[Path], user: str | None, mode: str,
               default: tuple[int, int] | None) -> tuple[tuple[int, int] | None, str]:
    """Who a container of the image runs as, and its home: the image's USER (a name from its
    /etc/passwd, or uid[:gid]). Root, or no USER, is root of gVisor's own kernel under gVisor;
    under namespaces, where root would be the host's, it is the server's container user."""
    name, _, group = (user or "").partition(":")
    entries = _passwd(lowers, "passwd")
    if not name:
        uid = 0
    elif name.isdigit():
        uid = int(name)
    elif name in entries:
        uid = int(entries[name][1])
    else:
        raise IsolationUnavailable(f"The image's USER {user!r} is not in its /etc/passwd; "
                                   "name a user it has, or a numeric uid.")
    row = next((e for e in entries.values() if int(e[1]) == uid), None)
    home = row[4] if row else "/"
    if uid == 0:
        if mode == GVISOR:
            return (0, 0), home
        return default, "/tmp"
    if group.isdigit():
        gid = int(group)
    elif group:
        groups = _passwd(lowers, "group")
        if group not in groups:
            raise IsolationUnavailable(f"The image's USER {user!r} names a group its "
                                       "/etc/group lacks.")
        gid = int(groups[group][1])
    else:
        gid = int(row[2]) if row else uid
    return (uid, gid), home


def _passwd(lowers: Sequence[Path], name: str) -> dict[str, list[str]]:
    """The image's /etc/passwd or /etc/group: the newest layer's that has one."""
    for layer in lowers:
        path = layer / "etc" / name
        if path.is_symlink() or path.exists() and not path.is_file():
            return {}  # deleted by that layer (a whiteout), or not a plain file
        if path.is_file():
            out = {}
            for line in path.read_text(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    out[fields[0]] = [fields[0], *fields[2:]]
            return out
    return {}
