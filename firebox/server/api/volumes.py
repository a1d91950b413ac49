"""The Volume API. A volume's committed state is a manifest (path -> content digest) in the
database, with the contents in the server's blob store. Containers work on private copies and
send their changes back with a commit; the last commit to a path wins."""

from __future__ import annotations

import posixpath
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ...store import schema as s
from ...wire import ids
from ..core.errors import ApiError, invalid
from ..core.objects import Objects
from ..core.ownership import owned
from . import requests as rq
from .apps import identity, msgpack_body, packed, query
from .objects import ObjectRoutes

if TYPE_CHECKING:
    from ..core.plane import ControlPlane

F, V = s.volume_files, s.volumes
MAX_PATH = 1024


async def _sizes(cp: ControlPlane, volume_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await cp.db.read(
        sa.select(F.c.volume_id, sa.func.count(), sa.func.sum(F.c.size))
        .where(F.c.volume_id.in_(volume_ids)).group_by(F.c.volume_id)
    )
    return {r[0]: {"files": r[1], "bytes": int(r[2] or 0)} for r in rows}


VOLUMES = ObjectRoutes(Objects("volume", ids.VOLUME, V, [F.c.volume_id], {"version": 0}),
                       "volumes", _sizes, {"files": 0, "bytes": 0},
                       looked_up=("id", "name", "version"), renamable=True)
OWNED = VOLUMES.owned


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


async def manifest(request: Request) -> Response:
    cp, volume_id = await VOLUMES.target(request)

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        # Through the writer, so the version and the files come from one commit.
        version = (await conn.execute(sa.select(V.c.version).where(V.c.id == volume_id))).scalar()
        rows = (await conn.execute(sa.select(F).where(F.c.volume_id == volume_id))).all()
        return {"version": version, "files": {r.path: entry(r) for r in rows}}

    return packed(await cp.db.write(op))


async def commit(request: Request) -> Response:
    """Apply a set of changes: put files (already uploaded as blobs) and delete paths."""
    body = await msgpack_body(request, rq.VolumeCommit)
    cp, volume_id = await VOLUMES.target(request)
    puts, force = body.put, body.force
    deletes = [clean_path(p) for p in body.delete]
    uploaded = await owned(cp, identity(request).workspace_id,
                           sorted({m[0] for m in puts.values()}))
    rows = []
    for path, meta in puts.items():
        clean = clean_path(path)
        if meta[0] not in uploaded:
            raise invalid(f"The contents of '{path}' were not uploaded; upload them first.")
        rows.append({"volume_id": volume_id, "path": clean, "sha256": meta[0],
                     "size": int(meta[1]), "mode": int(meta[2]) & 0o777, "mtime": float(meta[3])})

    async def op(conn: AsyncConnection) -> int:
        paths = [r["path"] for r in rows]
        if deletes:
            await conn.execute(sa.delete(F).where(F.c.volume_id == volume_id,
                                                  F.c.path.in_(deletes)))
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

    return packed({"version": await cp.db.write(op)})


async def listdir(request: Request) -> Response:
    body = await msgpack_body(request, rq.VolumeList)
    cp, volume_id = await VOLUMES.target(request)
    path = clean_path(body.path, root_ok=True)
    recursive = body.recursive
    async with cp.db.engine.connect() as conn:
        single, below = await files_at(conn, volume_id, path)
    if single is not None:
        return packed({"entries": [[single.path, "file", single.mtime, single.size]]})
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
    return packed({"entries": sorted(entries.values())})


async def read_file(request: Request) -> Response:
    cp, volume_id = await VOLUMES.target(request)
    path = clean_path(query(request, rq.VolumeFile).path)
    rows = await cp.db.read(sa.select(F.c.sha256).where(F.c.volume_id == volume_id,
                                                         F.c.path == path))
    if not rows:
        async with cp.db.engine.connect() as conn:
            _, below = await files_at(conn, volume_id, path)
        if below:
            raise file_error("IsADirectoryError", f"'{path}' is a directory, not a file.")
        raise file_error("FileNotFoundError", f"No file '{path}' in the volume.")
    return FileResponse(cp.blobs.path(rows[0][0]), media_type="application/octet-stream")


async def remove(request: Request) -> Response:
    body = await msgpack_body(request, rq.VolumeRemove)
    cp, volume_id = await VOLUMES.target(request)
    recursive = body.recursive
    path = clean_path(body.path, root_ok=recursive)

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
    return packed({})


async def copy(request: Request) -> Response:
    """Copy files or directories; into dst when it is a directory or there are several."""
    body = await msgpack_body(request, rq.VolumeCopy)
    cp, volume_id = await VOLUMES.target(request)
    sources = [clean_path(p) for p in body.src_paths]
    dst = clean_path(body.dst_path, root_ok=True)
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
            if below and not body.recursive:
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
    return packed({})


routes = [
    *VOLUMES.routes(),
    Route("/v1/volumes/{ref}/manifest", manifest, methods=["GET"]),
    Route("/v1/volumes/{ref}/commit", commit, methods=["POST"]),
    Route("/v1/volumes/{ref}/list", listdir, methods=["POST"]),
    Route("/v1/volumes/{ref}/file", read_file, methods=["GET"]),
    Route("/v1/volumes/{ref}/remove", remove, methods=["POST"]),
    Route("/v1/volumes/{ref}/copy", copy, methods=["POST"]),
]
