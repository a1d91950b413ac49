"""Volumes. A volume's committed state is a manifest (path -> content digest) in the database,
with the contents in the server's blob store. Containers work on private copies and send their
changes back with a commit; the last commit to a path wins."""

from __future__ import annotations

import posixpath
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...store import schema as s
from ...wire import ids
from .errors import ApiError, invalid
from .objects import Objects
from .ownership import owned

if TYPE_CHECKING:
    from .plane import ControlPlane

F, V = s.volume_files, s.volumes
MAX_PATH = 1024


async def _sizes(cp: ControlPlane, volume_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await cp.db.read(
        sa.select(F.c.volume_id, sa.func.count(), sa.func.sum(F.c.size))
        .where(F.c.volume_id.in_(volume_ids)).group_by(F.c.volume_id)
    )
    return {r[0]: {"files": r[1], "bytes": int(r[2] or 0)} for r in rows}


VOLUMES = Objects("volume", ids.VOLUME, V, [F.c.volume_id], _sizes, {"files": 0, "bytes": 0},
                  extra={"version": 0}, looked_up=("id", "name", "version"))


def clean_path(path: Any, *, root_ok: bool = False) -> str:
    """A path inside a volume, "/"-separated and relative; anything that could escape the
    volume (.., an absolute path, NUL) is refused."""
    if not isinstance(path, str) or "\0" in path or len(path) > MAX_PATH:
        raise invalid(f"{path!r} is not a valid volume path.")
    if path.startswith("/"):
        raise invalid(f"'{path}' is absolute; volume paths are relative to the volume's root.")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"'{path}' steps out of its directory; '.' and '..' are not allowed.")
    if not parts and not root_ok:
        raise invalid("The path names the volume's root; name a file or directory in it.")
    return "/".join(parts)


def file_error(kind: str, message: str) -> ApiError:
    return ApiError(404 if kind == "FileNotFoundError" else 409, kind, message)


def under(prefix: str) -> Any:
    """Files strictly below directory prefix ("" is the root)."""
    if not prefix:
        return sa.true()
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return F.c.path.like(escaped + "/%", escape="\\")


async def files_at(conn: Any, volume_id: str, path: str) -> tuple[Any, list[Any]]:
    """(the file at path or None, the files below path as a directory)."""
    single = (await conn.execute(
        sa.select(F).where(F.c.volume_id == volume_id, F.c.path == path)
    )).first() if path else None
    below = (await conn.execute(
        sa.select(F).where(F.c.volume_id == volume_id, under(path)).order_by(F.c.path)
    )).all()
    return single, list(below)


async def bump(conn: AsyncConnection, volume_id: str) -> None:
    await conn.execute(V.update().where(V.c.id == volume_id).values(version=V.c.version + 1))


def entry(row: Any) -> list[Any]:
    return [row.sha256, row.size, row.mode, row.mtime]


async def manifest(cp: ControlPlane, volume_id: str) -> dict[str, Any]:
    """The volume's version and its files: path -> [sha256, size, mode, mtime]."""

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        # Through the writer, so the version and the files come from one commit.
        version = (await conn.execute(sa.select(V.c.version).where(V.c.id == volume_id))).scalar()
        rows = (await conn.execute(sa.select(F).where(F.c.volume_id == volume_id))).all()
        return {"version": version, "files": {r.path: entry(r) for r in rows}}

    result: dict[str, Any] = await cp.db.write(op)
    return result


async def commit(cp: ControlPlane, workspace_id: str, volume_id: str,
                 puts: dict[str, Any], deletes: list[str], force: bool) -> int:
    """Apply a set of changes: put files (already uploaded as blobs by the workspace, each
    path -> [sha256, size, mode, mtime]) and delete paths. The volume's new version."""
    gone = [clean_path(p) for p in deletes]
    uploaded = await owned(cp, workspace_id, sorted({m[0] for m in puts.values()}))
    rows = []
    for path, meta in puts.items():
        clean = clean_path(path)
        if meta[0] not in uploaded:
            raise invalid(f"The contents of '{path}' were not uploaded; upload them first.")
        rows.append({"volume_id": volume_id, "path": clean, "sha256": meta[0],
                     "size": int(meta[1]), "mode": int(meta[2]) & 0o777, "mtime": float(meta[3])})

    async def op(conn: AsyncConnection) -> int:
        paths = [r["path"] for r in rows]
        if gone:
            await conn.execute(sa.delete(F).where(F.c.volume_id == volume_id,
                                                  F.c.path.in_(gone)))
        if paths:
            existing = (await conn.execute(sa.select(F.c.path).where(
                F.c.volume_id == volume_id, F.c.path.in_(paths)))).all()
            if existing and not force:
                raise file_error(
                    "FileExistsError",
                    f"'{existing[0][0]}' exists in the volume; pass force=True to overwrite it.",
                )
            await conn.execute(sa.delete(F).where(F.c.volume_id == volume_id, F.c.path.in_(paths)))
            await conn.execute(F.insert(), rows)
        await bump(conn, volume_id)
        return int((await conn.execute(
            sa.select(V.c.version).where(V.c.id == volume_id))).scalar_one())

    version: int = await cp.db.write(op)
    return version


async def listdir(cp: ControlPlane, volume_id: str, path: str,
                  recursive: bool) -> list[list[Any]]:
    """[path, "file" or "directory", mtime, size] of the file at path, or of what the directory
    at path holds (all below it with recursive), sorted by path."""
    path = clean_path(path, root_ok=True)
    async with cp.db.engine.connect() as conn:
        single, below = await files_at(conn, volume_id, path)
    if single is not None:
        return [[single.path, "file", single.mtime, single.size]]
    if path and not below:
        raise file_error("FileNotFoundError", f"No file or directory '{path}' in the volume.")
    entries: dict[str, list[Any]] = {}
    start = len(path) + 1 if path else 0
    for r in below:
        rel = r.path[start:].split("/")
        for depth in range(1, len(rel)):  # the directories on the way
            if recursive or depth == 1:
                d = r.path[:start] + "/".join(rel[:depth])
                old = entries.get(d)
                entries[d] = [d, "directory", max(r.mtime, old[2] if old else 0.0), 0]
        if recursive or len(rel) == 1:
            entries[r.path] = [r.path, "file", r.mtime, r.size]
    return sorted(entries.values())


async def contents(cp: ControlPlane, volume_id: str, path: str) -> Path:
    """Where the contents of the file at path lie in the blob store."""
    path = clean_path(path)
    rows = await cp.db.read(sa.select(F.c.sha256).where(F.c.volume_id == volume_id,
                                                         F.c.path == path))
    if not rows:
        async with cp.db.engine.connect() as conn:
            _, below = await files_at(conn, volume_id, path)
        if below:
            raise file_error("IsADirectoryError", f"'{path}' is a directory, not a file.")
        raise file_error("FileNotFoundError", f"No file '{path}' in the volume.")
    return cp.blobs.path(rows[0][0])


async def remove(cp: ControlPlane, volume_id: str, path: str, recursive: bool) -> None:
    """Remove the file at path or, with recursive, the directory and all below it."""
    path = clean_path(path, root_ok=recursive)

    async def op(conn: AsyncConnection) -> None:
        single, below = await files_at(conn, volume_id, path)
        if single is None and not below:
            raise file_error("FileNotFoundError", f"No file or directory '{path}' in the volume.")
        if below and not recursive:
            raise file_error("IsADirectoryError",
                             f"'{path}' is a directory; pass recursive=True to remove it.")
        where = F.c.path.in_([r.path for r in below] + ([path] if single else []))
        await conn.execute(sa.delete(F).where(F.c.volume_id == volume_id, where))
        await bump(conn, volume_id)

    await cp.db.write(op)


async def copy(cp: ControlPlane, volume_id: str, src_paths: list[str], dst_path: str,
               recursive: bool) -> None:
    """Copy files or directories; into dst when it is a directory or there are several."""
    sources = [clean_path(p) for p in src_paths]
    dst = clean_path(dst_path, root_ok=True)
    if not sources:
        raise invalid("copy_files needs at least one source path.")
    now = time.time()

    async def op(conn: AsyncConnection) -> None:
        _, dst_below = await files_at(conn, volume_id, dst)
        into = len(sources) > 1 or bool(dst_below) or not dst
        new: dict[str, Any] = {}
        for src in sources:
            single, below = await files_at(conn, volume_id, src)
            if single is None and not below:
                raise file_error("FileNotFoundError", f"No file or directory '{src}'.")
            if below and not recursive:
                raise file_error("IsADirectoryError",
                                 f"'{src}' is a directory; pass recursive=True to copy it.")
            target = posixpath.join(dst, posixpath.basename(src)) if into else dst
            if single is not None:
                new[target] = single
            for r in below:
                new[target + r.path[len(src):]] = r
        await conn.execute(sa.delete(F).where(F.c.volume_id == volume_id,
                                              F.c.path.in_(list(new))))
        await conn.execute(F.insert(), [
            {"volume_id": volume_id, "path": p, "sha256": r.sha256, "size": r.size,
             "mode": r.mode, "mtime": now} for p, r in new.items()
        ])
        await bump(conn, volume_id)

    await cp.db.write(op)
