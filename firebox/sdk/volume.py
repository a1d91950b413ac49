"""Volume: a file tree on the control plane that containers mount.

A container works on a private copy of each volume it mounts; nothing it writes is seen by
anyone else until it calls `commit()` (or exits), and it sees others' commits only after
`reload()`. The last commit to a path wins.

Where the copy lives: under `namespaces` isolation (the default) the backend binds it at the
mount path itself and sets FIREBOX_VOLUMES_AT_PATH=1, so code written for Modal works as it is.
Under `process` and `gvisor` a path like /data cannot be made, so the copy lives under the
container's root at volumes/<mount path>; `mounted_path("/data/x")` and the
FIREBOX_VOLUME_PATHS variable (JSON: mount path -> local path) say where.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any

from .. import _sync
from .. import client as client_mod
from .._sync import live_classmethod, live_method, live_method_gen
from ..exception import InvalidError
from ..wire import settings
from ..wire.digests import file_sha256
from .blobs import upload_blobs
from .named import NamedObject


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3


@dataclass(frozen=True)
class FileEntry:
    path: str
    type: FileEntryType
    mtime: float
    size: int


def _rel(path: str) -> str:
    """Volume paths are relative to its root; a leading "/" means the root, as in Modal."""
    return str(path).lstrip("/")


class Volume(NamedObject):
    """`vol = Volume.from_name("models", create_if_missing=True)`; mount it with
    `@app.function(volumes={"/models": vol})`."""

    _path = "/v1/volumes"
    _kind = "volume"

    @live_method
    async def commit(self) -> None:
        """Send this container's changes to the volume, for others to see after reload()."""
        for mount in _mounts_of(await self._resolve()):
            await mount.commit()

    @live_method
    async def reload(self) -> None:
        """See the latest committed state; this container's uncommitted changes are kept."""
        for mount in _mounts_of(await self._resolve()):
            await mount.reload()

    @live_method
    async def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        """The files and directories at path (everything below it with recursive=True)."""
        resp = await self._call("list", {"path": _rel(path), "recursive": recursive})
        return [
            FileEntry(p, FileEntryType.FILE if t == "file" else FileEntryType.DIRECTORY, m, s)
            for p, t, m, s in resp["entries"]
        ]

    @live_method_gen
    async def iterdir(self, path: str, *, recursive: bool = True) -> AsyncIterator[FileEntry]:
        for entry in await self.listdir.aio(path, recursive=recursive):
            yield entry

    @live_method_gen
    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """The committed file's contents, in chunks; FileNotFoundError if it is not there."""
        object_id = await self._resolve()
        c = client_mod.current()
        async with c.http.stream("GET", f"{self._path}/{object_id}/file",
                                 params={"path": _rel(path)}) as response:
            if response.status_code >= 400:
                await response.aread()
                client_mod._decode(response)
            async for chunk in response.aiter_bytes(1 << 20):
                yield chunk

    @live_method
    async def read_file_into_fileobj(self, path: str, fileobj: IO[bytes]) -> int:
        size = 0
        async for chunk in self.read_file.aio(path):
            fileobj.write(chunk)
            size += len(chunk)
        return size

    @live_method
    async def remove_file(self, path: str, recursive: bool = False) -> None:
        """Remove a file, or a directory and all below it with recursive=True."""
        await self._call("remove", {"path": _rel(path), "recursive": recursive})

    @live_method
    async def copy_files(self, src_paths: list[str], dst_path: str,
                         recursive: bool = False) -> None:
        """Copy files (and directories, with recursive=True) within the volume: into dst_path
        when it is a directory or there are several sources, else to dst_path itself."""
        await self._call("copy", {"src_paths": [_rel(p) for p in src_paths],
                                  "dst_path": _rel(dst_path), "recursive": recursive})

    def batch_upload(self, force: bool = False) -> BatchUpload:
        """`with vol.batch_upload() as batch: batch.put_file(...)`: uploads on exit, at once.
        An existing file is an error unless force=True."""
        return BatchUpload(self, force)

    @live_classmethod
    async def rename(cls, old_name: str, new_name: str) -> None:
        """Give the volume called old_name a new name."""
        await client_mod.current().request("POST", f"{cls._path}/{old_name}/rename",
                                           packed={"name": new_name})


class BatchUpload:
    def __init__(self, volume: Volume, force: bool) -> None:
        self.volume = volume
        self.force = force
        self.files: dict[str, tuple[Path | bytes, int]] = {}  # remote -> (source, mode)

    def put_file(self, local_file: str | Path | IO[bytes], remote_path: str,
                 mode: int | None = None) -> None:
        remote = _rel(remote_path)
        if remote.endswith("/") or not remote:
            raise InvalidError(f"'{remote_path}' names a directory; give the file's path.")
        if isinstance(local_file, str | Path):
            src = Path(local_file)
            if not src.is_file():
                raise FileNotFoundError(f"No local file {src}.")
            self.files[remote] = (src, mode if mode is not None else src.stat().st_mode & 0o777)
        else:
            self.files[remote] = (local_file.read(), mode if mode is not None else 0o644)

    def put_directory(self, local_path: str | Path, remote_path: str,
                      recursive: bool = True) -> None:
        root = Path(local_path)
        if not root.is_dir():
            raise NotADirectoryError(f"No local directory {root}.")
        pattern = "**/*" if recursive else "*"
        for f in sorted(root.glob(pattern)):
            if f.is_file():
                rel = f.relative_to(root).as_posix()
                self.put_file(f, f"{_rel(remote_path).rstrip('/')}/{rel}".lstrip("/"))

    async def _upload(self) -> None:
        """Hash each file a chunk at a time and send those the server lacks, streamed from
        disk: a batch of large files is never held in memory (a file object's content is,
        read when it was put)."""
        blobs: dict[str, bytes | Path] = {}
        puts: dict[str, list[Any]] = {}
        now = time.time()
        for remote, (src, mode) in self.files.items():
            if isinstance(src, Path):
                digest, size = await asyncio.to_thread(file_sha256, src)
            else:
                digest, size = hashlib.sha256(src).hexdigest(), len(src)
            blobs[digest] = src
            puts[remote] = [digest, size, mode, now]
        if puts:
            await upload_blobs(blobs)
            await self.volume._call("commit", {"put": puts, "force": self.force})

    def __enter__(self) -> BatchUpload:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            _sync.run(self._upload())

    async def __aenter__(self) -> BatchUpload:
        return self

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            await _sync.run_async(self._upload())


# ---- mounts inside a container ---------------------------------------------------------------

_MOUNTS: dict[str, list[LocalMount]] = {}  # volume id -> its mounts in this container
_PATHS: dict[str, str] = {}  # mount path -> local directory


def _mounts_of(volume_id: str) -> list[LocalMount]:
    mounts = _MOUNTS.get(volume_id)
    if not mounts:
        raise InvalidError(
            "commit() and reload() work inside a container that mounts this volume "
            "(@app.function(volumes={'/path': vol})); elsewhere, use batch_upload."
        )
    return mounts


def mounted_path(path: str) -> str:
    """Where a path under a volume's mount path really is in this container."""
    for mount, local in sorted(_PATHS.items(), key=lambda kv: -len(kv[0])):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return local + path[len(mount.rstrip("/")):]
    return path


class LocalMount:
    """A container's working copy of one volume, and what it last saw of the volume (base)."""

    def __init__(self, volume_id: str, mount_path: str, local: Path) -> None:
        self.volume_id = volume_id
        self.mount_path = mount_path
        self.local = local
        self.base: dict[str, list[Any]] = {}  # path -> [sha256, size, mode, mtime] last synced
        self.seen: dict[str, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256)

    def _scan(self) -> dict[str, str]:
        """Every file of the working copy with its digest; a symlink is refused."""
        found: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.local):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                if full.is_symlink():
                    rel = full.relative_to(self.local).as_posix()
                    raise InvalidError(
                        f"'{rel}' in the volume at {self.mount_path} is a symlink; volumes "
                        "hold plain files and directories only. Replace it with a copy."
                    )
            for name in filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(self.local).as_posix()
                st = full.stat()
                cached = self.seen.get(rel)
                if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
                    found[rel] = cached[2]
                    continue
                digest = file_sha256(full)[0]
                self.seen[rel] = (st.st_size, st.st_mtime_ns, digest)
                found[rel] = digest
        return found

    def _changes(self) -> tuple[dict[str, str], list[str]]:
        local = self._scan()
        puts = {p: d for p, d in local.items() if self.base.get(p, [None])[0] != d}
        deletes = [p for p in self.base if p not in local]
        return puts, deletes

    async def commit(self) -> None:
        puts, deletes = await asyncio.to_thread(self._changes)
        if not puts and not deletes:
            return
        blobs: dict[str, bytes | Path] = {}
        entries: dict[str, list[Any]] = {}
        for rel, digest in puts.items():  # streamed from disk as they are sent
            full = self.local / rel
            st = full.stat()
            blobs[digest] = full
            entries[rel] = [digest, st.st_size, st.st_mode & 0o777, st.st_mtime]
        await upload_blobs(blobs)
        await client_mod.current().request(
            "POST", f"{Volume._path}/{self.volume_id}/commit",
            packed={"put": entries, "delete": deletes, "force": True},
        )
        self.base.update(entries)
        for rel in deletes:
            self.base.pop(rel, None)

    async def reload(self) -> None:
        c = client_mod.current()
        remote = (await c.request("GET", f"{Volume._path}/{self.volume_id}/manifest"))["files"]
        puts, deletes = await asyncio.to_thread(self._changes)
        changed_here = set(puts) | set(deletes)
        for rel, meta in remote.items():
            if rel in changed_here or self.base.get(rel, [None])[0] == meta[0]:
                continue
            data = await c.request("GET", f"/v1/blobs/{meta[0]}")
            await asyncio.to_thread(self._write, rel, data, meta)
            self.base[rel] = meta
        for rel in [p for p in self.base if p not in remote and p not in changed_here]:
            with contextlib.suppress(FileNotFoundError):
                (self.local / rel).unlink()
            self.base.pop(rel, None)
            self.seen.pop(rel, None)

    def _write(self, rel: str, data: bytes, meta: list[Any]) -> None:
        target = (self.local / rel).resolve()
        if not target.is_relative_to(self.local.resolve()):
            raise InvalidError(f"refusing to write outside the volume: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.firebox-tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, int(meta[2]) & 0o777 or 0o644)
        os.replace(tmp, target)
        st = target.stat()
        self.seen[rel] = (st.st_size, st.st_mtime_ns, meta[0])


async def mount_all(volumes: dict[str, str], container_root: Path) -> dict[str, str]:
    """Make this container's working copies of its volumes; returns mount path -> local dir."""
    at_path = settings.VOLUMES_AT_PATH.get()
    for mount_path, volume_id in volumes.items():
        local = Path(mount_path) if at_path else (
            container_root / "volumes" / mount_path.strip("/")
        )
        local.mkdir(parents=True, exist_ok=True)
        mount = LocalMount(volume_id, mount_path, local)
        await mount.reload()
        _MOUNTS.setdefault(volume_id, []).append(mount)
        _PATHS[mount_path] = str(local)
    os.environ[settings.VOLUME_PATHS.name] = json.dumps(_PATHS)
    return dict(_PATHS)


async def commit_all() -> None:
    """Commit every mounted volume (a container does this as it shuts down)."""
    for mounts in _MOUNTS.values():
        for mount in mounts:
            await mount.commit()


def check_mounts(volumes: Any) -> dict[str, Volume]:
    """Validate volumes={path: Volume}."""
    if not volumes:
        return {}
    if not isinstance(volumes, dict):
        raise InvalidError("volumes= takes a dict of {mount path: firebox.Volume}.")
    out: dict[str, Volume] = {}
    for key, vol in volumes.items():
        path = key.as_posix() if isinstance(key, PurePath) else key  # Path("/data") as Modal's
        if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == "":
            raise InvalidError(f"Mount path {path!r} must be an absolute path other than '/'.")
        if ".." in path.split("/"):
            raise InvalidError(f"Mount path {path!r} must not contain '..'.")
        if not isinstance(vol, Volume):
            raise InvalidError(
                f"volumes[{path!r}] must be a firebox.Volume, not {type(vol).__name__}."
            )
        out[path.rstrip("/")] = vol
    return out


async def resolve_mounts(volumes: dict[str, Volume]) -> dict[str, str]:
    return {path: await vol._resolve() for path, vol in volumes.items()}


__all__ = ["FileEntry", "FileEntryType", "Volume", "mounted_path"]
