"""Volumes in sandboxes: each volume gets a working copy under the sandbox's directory, bound
at its mount path, and the control plane commits the copy's changes back when the sandbox ends.

The copy is written by untrusted code, so reading it back follows no symlink and takes only
regular files: a symlink, FIFO or device in it is left out of the commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import posixpath
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..store import schema as s
from .errors import invalid

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.sandboxes")
F, V = s.volume_files, s.volumes
# Where a volume cannot go: the kernel's own file systems inside the sandbox.
RESERVED = ("/proc", "/sys", "/dev")


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
            target.write_bytes(cp.blobs.get(digest))
            os.chmod(target, (mode & 0o777) or 0o644)
            os.utime(target, (mtime, mtime))

    await asyncio.to_thread(write)
    return WorkingCopy(volume_id, workspace_id, mount_path, local,
                       {rel: digest for rel, digest, _, _ in files})


def _scan(local: Path) -> dict[str, tuple[bytes, int, float]]:
    """rel path -> (contents, mode, mtime) of every regular file, symlinks not followed."""
    found: dict[str, tuple[bytes, int, float]] = {}
    for dirpath, _dirs, names in os.walk(local, followlinks=False):
        for name in names:
            full = os.path.join(dirpath, name)
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # a symlink (ELOOP) or gone
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = os.path.relpath(full, local).replace(os.sep, "/")
                found[rel] = (f.read(), stat.S_IMODE(st.st_mode), st.st_mtime)
    return found


async def commit(cp: ControlPlane, copy: WorkingCopy) -> None:
    """Send the copy's changes (new, changed and deleted files) to its volume; the last commit
    to a path wins, as with any container's commit."""
    if not copy.local.is_dir():
        return
    found = await asyncio.to_thread(_scan, copy.local)
    now = time.time()
    rows, digests = [], []
    for rel, (data, mode, mtime) in found.items():
        digest = hashlib.sha256(data).hexdigest()
        if copy.base.get(rel) == digest:
            continue
        await asyncio.to_thread(cp.blobs.put, digest, data)
        digests.append(digest)
        rows.append({"volume_id": copy.volume_id, "path": rel, "sha256": digest,
                     "size": len(data), "mode": mode, "mtime": mtime})
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
        await conn.execute(V.update().where(V.c.id == copy.volume_id)
                           .values(version=V.c.version + 1))

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
