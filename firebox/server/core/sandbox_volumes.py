"""Volumes in sandboxes: each volume gets a working copy under the sandbox's directory, bound
at its mount path, and the control plane commits the copy's changes back when the sandbox ends.

The copy is written by untrusted code, so reading it back follows no symlink and takes only
regular files: a symlink, FIFO or device in it is left out of the commit. Files go both ways a
chunk at a time, never whole in memory: a volume may hold files of gigabytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import posixpath
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from . import volumes
from .errors import invalid

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.sandboxes")
F = s.volume_files
# Where a volume cannot go: the kernel's own file systems inside the sandbox.
RESERVED = ("/proc", "/sys", "/dev")
CHUNK = 1024 * 1024  # bytes of a file read at a time


def check_mount_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise invalid(f"Mount path {path!r} must be an absolute path.")
    clean = posixpath.normpath(path)
    if clean == "/" or ".." in path.split("/"):
        raise invalid(f"Mount path {path!r} must be an absolute path other than '/', "
                      "without '..'.")
    if any(clean == r or clean.startswith(r + "/") for r in RESERVED):
        raise invalid(f"Mount path {path!r} is inside {', '.join(RESERVED)}; pick another.")
    return clean


@dataclass
class WorkingCopy:
    volume_id: str
    workspace_id: str
    mount_path: str
    local: Path
    base: dict[str, str]  # path -> sha256 as checked out


async def check_out(cp: ControlPlane, workspace_id: str, volume_id: str, mount_path: str,
                    local: Path) -> WorkingCopy:
    rows = await cp.db.read(sa.select(F).where(F.c.volume_id == volume_id))
    files = [(r.path, r.sha256, r.mode, r.mtime) for r in rows]

    def write() -> None:
        local.mkdir(parents=True, exist_ok=True)
        for rel, digest, mode, mtime in files:
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cp.blobs.path(digest), target)
            os.chmod(target, (mode & 0o777) or 0o644)
            os.utime(target, (mtime, mtime))

    await asyncio.to_thread(write)
    return WorkingCopy(volume_id, workspace_id, mount_path, local,
                       {rel: digest for rel, digest, _, _ in files})


def _open_regular(path: str) -> IO[bytes] | None:
    """The file at path, if it is a regular file: a symlink is not followed, nor a FIFO read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # a symlink (ELOOP) or gone
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        return None
    return f


def _scan(local: Path) -> dict[str, tuple[str, int, int, float]]:
    """rel path -> (sha256, size, mode, mtime) of every regular file, symlinks not followed,
    each hashed a chunk at a time."""
    found: dict[str, tuple[str, int, int, float]] = {}
    for dirpath, _dirs, names in os.walk(local, followlinks=False):
        for name in names:
            full = os.path.join(dirpath, name)
            f = _open_regular(full)
            if f is None:
                continue
            with f:
                st = os.fstat(f.fileno())
                digest = hashlib.sha256()
                size = 0
                while data := f.read(CHUNK):
                    digest.update(data)
                    size += len(data)
            rel = os.path.relpath(full, local).replace(os.sep, "/")
            found[rel] = (digest.hexdigest(), size, stat.S_IMODE(st.st_mode), st.st_mtime)
    return found


def _store(cp: ControlPlane, path: Path, digest: str) -> bool:
    """Copy a scanned file into the blob store a chunk at a time; False if it is no longer a
    regular file or its content changed since it was hashed."""
    f = _open_regular(str(path))
    if f is None:
        return False
    with f, cp.blobs.receive(digest) as upload:
        while data := f.read(CHUNK):
            upload.write(data)
        try:
            upload.finish()
        except ValueError:
            return False
    return True


async def commit(cp: ControlPlane, copy: WorkingCopy) -> None:
    """Send the copy's changes (new, changed and deleted files) to its volume; the last commit
    to a path wins, as with any container's commit."""
    if not copy.local.is_dir():
        return
    found = await asyncio.to_thread(_scan, copy.local)
    now = time.time()
    rows, digests = [], []
    for rel, (digest, size, mode, mtime) in found.items():
        if copy.base.get(rel) == digest:
            continue
        if not await asyncio.to_thread(_store, cp, copy.local / rel, digest):
            log.warning("volume %s: %s changed while it was committed; its earlier version "
                        "stays", copy.volume_id, rel)
            continue
        digests.append(digest)
        rows.append({"volume_id": copy.volume_id, "path": rel, "sha256": digest,
                     "size": size, "mode": mode, "mtime": mtime})
    deletes = [rel for rel in copy.base if rel not in found]
    if not rows and not deletes:
        return

    async def op(conn: Any) -> None:
        for digest in set(digests):
            await conn.execute(cp.db.insert_ignore(s.blob_owners).values(
                workspace_id=copy.workspace_id, sha256=digest, created_at=now))
        gone = deletes + [r["path"] for r in rows]
        for i in range(0, len(gone), 500):
            await conn.execute(sa.delete(F).where(F.c.volume_id == copy.volume_id,
                                                  F.c.path.in_(gone[i:i + 500])))
        if rows:
            await conn.execute(F.insert(), rows)
        await volumes.bump(conn, copy.volume_id)

    await cp.db.write(op)
    copy.base.update({r["path"]: r["sha256"] for r in rows})
    for rel in deletes:
        copy.base.pop(rel, None)


async def commit_all(cp: ControlPlane, copies: list[WorkingCopy], sandbox_id: str) -> None:
    for copy in copies:
        try:
            await commit(cp, copy)
        except Exception as exc:  # one volume's failure must not keep the others' changes
            log.warning("sandbox %s: committing the volume at %s failed: %s",
                        sandbox_id, copy.mount_path, exc)
