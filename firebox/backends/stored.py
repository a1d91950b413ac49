"""Stored memory snapshots: a gVisor container checkpointed to disk once, and every later
container of its function restored from there, across server restarts (`runsc checkpoint`,
`runsc restore`).

The first container of a function with enable_memory_snapshot=True under gVisor starts as a
*snapshot maker* (runtime/template.py, run_checkpointed): it loads the code and runs the
@enter(snap=True) hooks, closes every connection, prints the word it was given and waits on
stdin. The backend checkpoints it into the store (which stops it), then restores the container
from there, that first one too: each restore reads its container's identity on stdin, says so
on stdout, connects as that container, fetches its code's files, runs its @enter(snap=False)
hooks and serves. A restored container sees its own directory where the maker saw its own.

A snapshot lives in STATE/snapshots/<pool>/<key>/: runsc's checkpoint image and meta.json.
The key covers the function's stored spec (code, image, options), the container environment a
restore keeps, and the versions of firebox (its sources) and runsc: any change makes a new
one, and the pool's older one is removed. A restore that fails (an image corrupt or missing, a
host whose files changed) removes the snapshot, says so in the container's log and the
container starts cold, making a new one.

Limits, with Debian's runsc (0.0~20221219): a restored sandbox has loopback only, its network
interfaces are not restored, so only a container without a network of its own is stored
(block_network=True, or a server without egress); others start cold and say why. Not with GPUs,
volumes or a registry image's root yet.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..wire import ids, settings
from . import cgroups
from .base import Launch
from .templates import Awaited, Process, Templates

if TYPE_CHECKING:
    from .local import LocalBackend

RESTORE_TIMEOUT = 60.0  # seconds a restore may take to say it is running
# What each restored container is given on stdin; the rest of its environment is the
# snapshot's, so these are the only variables the key leaves out.
GIVEN = (settings.TOKEN.name, settings.CONTAINER_ID.name, settings.MODAL_TASK_ID.name,
         settings.SERVER_URL.name)
KEYLESS = (*GIVEN, settings.CONTAINER_ROOT.name, settings.PARENT_PID.name)


@functools.cache
def versions() -> str:
    """firebox's sources (each file's size and time) and runsc's version, hashed: a restored
    runtime is the firebox the snapshot was made with."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        st = path.stat()
        h.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    runsc = shutil.which("runsc")
    if runsc is not None:
        st = Path(runsc).resolve().stat()
        h.update(f"runsc:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def key_for(env: dict[str, str], mode: str) -> tuple[str, str]:
    """(pool, key) of a container whose whole environment is env: what a restore keeps of it,
    and the versions it was made with."""
    keyed = Templates.key_for(env, mode, KEYLESS, versions())
    assert keyed is not None  # only snapshotting functions come here
    return keyed


class Store:
    """The snapshots on disk, one per pool (a function and its parameters) at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, pool: str, key: str) -> tuple[Path, dict[str, Any]] | None:
        place = self.root / pool / key
        try:
            meta = json.loads((place / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return place, meta

    def scratch(self, name: str) -> Path:
        """Where a checkpoint is written before it is whole."""
        path = self.root / ".new" / name
        path.mkdir(parents=True)
        return path

    def keep(self, pool: str, key: str, image: Path, meta: dict[str, Any]) -> Path:
        """Put a finished checkpoint in place, the pool's older snapshots out."""
        (image / "meta.json").write_text(json.dumps(meta))
        place = self.root / pool / key
        place.parent.mkdir(parents=True, exist_ok=True)
        for old in place.parent.iterdir():
            shutil.rmtree(old, ignore_errors=True)
        image.rename(place)
        return place

    @staticmethod
    def remove(place: Path) -> None:
        shutil.rmtree(place, ignore_errors=True)


def unsupported(backend: LocalBackend, launch: Launch, config: dict[str, Any]) -> str | None:
    """Why this container's memory cannot be stored, if it cannot."""
    if launch.gpus:
        return "its GPUs"
    if json.loads(launch.env.get(settings.VOLUMES.name) or "{}"):
        return "its volumes"
    if config.get("rootfs"):
        return "a registry image's root"
    if not launch.block_network and backend.netpool is not None:
        return ("its network: this runsc restores no network interfaces; block_network=True "
                "stores it")
    return None


async def start(backend: LocalBackend, launch: Launch, mode: str, volumes: list[str],
                layers: list[Path], config: dict[str, Any]) -> bool:
    """Start the container from its function's stored snapshot, made first if there is none;
    whether it did. Where one cannot be used, it says why and the container starts cold."""
    cid = launch.container_id
    why = unsupported(backend, launch, config)
    if why is not None:
        await backend._say(cid, f"firebox: enable_memory_snapshot is not stored with {why}; "
                                "this container starts cold")
        return False
    env = backend._container_env(launch, mode, volumes, config)
    pool, key = await asyncio.to_thread(key_for, env, mode)
    store = Store(backend.workdir.parent / "snapshots")
    making = backend.templates.making
    found = await asyncio.to_thread(store.find, pool, key)
    if found is None and key in making:  # another container is making it: wait for it
        found = await asyncio.shield(making[key])
    if found is not None:
        if await _restore(backend, launch, mode, layers, config, store, *found):
            return True
        if key in making:
            return False
    made: asyncio.Future[tuple[Path, dict[str, Any]] | None] = (
        asyncio.get_running_loop().create_future())
    making[key] = made
    try:
        return await _make(backend, launch, mode, layers, config, env, store, pool, key, made)
    finally:
        if not made.done():
            made.set_result(None)
        if making.get(key) is made:
            del making[key]


async def _make(backend: LocalBackend, launch: Launch, mode: str, layers: list[Path],
                config: dict[str, Any], env: dict[str, str], store: Store, pool: str, key: str,
                made: asyncio.Future[tuple[Path, dict[str, Any]] | None]) -> bool:
    """Run the snapshot maker as the container until it is ready, checkpoint it, and restore
    the container from the snapshot."""
    cid = launch.container_id
    name = ids.new_template_key()
    ready = f"firebox-checkpoint-ready {secrets.token_hex(8)}"
    env = {**env, settings.CHECKPOINT.name: ready,
           settings.CONTAINER_ROOT.name: str(backend.workdir / name)}
    began = time.perf_counter()
    p = await backend._spawn(name, mode, env, cgroups.limits_for(launch), [], stdin=True,
                             layers=layers, block_network=launch.block_network, image=config)
    p.awaited = Awaited(ready, asyncio.get_running_loop().create_future())
    # Until it is ready, it is the container: its output, its failure, its kill.
    p.container_id, p.memory_limit_mb = cid, cgroups.memory_limit_for(launch)
    backend.procs[cid] = p
    if not await asyncio.shield(p.awaited.seen):
        return True  # it ended as this container: its exit is reported as the container's
    p.container_id = None
    backend.procs.pop(cid, None)
    loaded_ms = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    image = store.scratch(name)
    # Its directory as it is now (the code's files, what the hooks wrote there) is part of the
    # snapshot: the restored process has it open.
    await asyncio.to_thread(shutil.copytree, p.sandbox.root, image / "root", symlinks=True)
    failure = await _checkpoint(p, image)
    if failure is not None:
        await backend._kill(p)
        store.remove(image)
        await backend._say(cid, f"firebox: could not store the memory snapshot ({failure}); "
                                "this container starts cold")
        return False
    size = sum(f.stat().st_size for f in image.rglob("*") if f.is_file())
    meta = {"pool": pool, "key": key, "root": p.sandbox.inside(), "made": time.time(),
            "loaded_ms": round(loaded_ms), "checkpoint_ms": round(
                (time.perf_counter() - began) * 1000), "bytes": size, "versions": versions()}
    found = await asyncio.to_thread(store.keep, pool, key, image, meta)
    made.set_result((found, meta))
    return await _restore(backend, launch, mode, layers, config, store, found, meta,
                          made_here=True)


async def _checkpoint(p: Process, image: Path) -> str | None:
    """Checkpoint the maker into image (runsc stops it); what went wrong, if anything."""
    walls = p.sandbox
    argv = ["runsc", "--root", str(walls.runsc_root), "checkpoint", "--image-path", str(image),
            walls.container_id]
    if walls.netns:  # runsc's control socket is in the sandbox's network namespace
        argv = ["nsenter", f"--net={walls.netns}", *argv]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode == 0:
        return None
    text = err.decode(errors="replace").strip().splitlines()
    return f"runsc checkpoint: {text[0][:300] if text else f'exit {proc.returncode}'}"


async def _restore(backend: LocalBackend, launch: Launch, mode: str, layers: list[Path],
                   config: dict[str, Any], store: Store, place: Path, meta: dict[str, Any],
                   made_here: bool = False) -> bool:
    """Restore the container from a stored snapshot; whether it did. One that fails is removed
    (runsc's reason is in the container's log)."""
    cid = launch.container_id
    restored = f"firebox-restored {secrets.token_hex(8)}"
    began = time.perf_counter()
    p = await _take_spare(backend, launch, str(meta.get("key")))
    spare = p is not None
    if p is None:
        try:
            p = await _launch(backend, launch, mode, layers, config, place, meta, cid)
        except (OSError, KeyError, TypeError) as exc:
            store.remove(place)
            await backend._say(cid, f"firebox: the stored memory snapshot is unusable ({exc}); "
                                    "it is removed and this container starts cold")
            return False
    p.awaited = Awaited(restored, asyncio.get_running_loop().create_future(), owns_exit=True)
    p.container_id, p.memory_limit_mb = cid, cgroups.memory_limit_for(launch)
    backend.procs[cid] = p
    given = {k: launch.env[k] for k in GIVEN if k in launch.env}  # the plane's, per container
    assert p.proc.stdin is not None
    try:
        p.proc.stdin.write(json.dumps({"env": given, "restored": restored}).encode() + b"\n")
        await p.proc.stdin.drain()
        p.proc.stdin.close()
        seen = await asyncio.wait_for(asyncio.shield(p.awaited.seen), RESTORE_TIMEOUT)
    except (OSError, TimeoutError):  # it hangs, or it is gone already
        await backend._kill(p)
        seen = await asyncio.shield(p.awaited.seen)  # resolved once its exit is handled
    if p.killed:
        return True  # the control plane stopped it: its exit is reported as the container's
    if not seen:
        p.container_id = None
        backend.procs.pop(cid, None)
        store.remove(place)
        await backend._say(cid, "firebox: the stored memory snapshot could not be restored "
                                "(runsc's reason above); it is removed and this container "
                                "starts cold")
        return False
    ms = (time.perf_counter() - began) * 1000
    _spare_soon(backend, launch, mode, layers, config, place, meta)
    size = f"{meta.get('bytes', 0) / 2**20:.1f} MiB"
    await backend._say(cid, (
        f"firebox: stored the memory snapshot ({size}; code imported and @enter(snap=True) "
        f"hooks run in {meta['loaded_ms']} ms, checkpointed in {meta['checkpoint_ms']} ms); "
        f"this container is restored from it in {ms:.0f} ms") if made_here else (
        f"firebox: restored from the stored memory snapshot in {ms:.0f} ms ({size}, made "
        f"{_ago(meta.get('made', time.time()))}"
        f"{'; its sandbox was restored ahead' if spare else ''})"))
    return True


async def _launch(backend: LocalBackend, launch: Launch, mode: str, layers: list[Path],
                  config: dict[str, Any], place: Path, meta: dict[str, Any], name: str
                  ) -> Process:
    """Start restoring the snapshot as name (a container, or a spare): its directory a copy of
    the snapshot's. It waits on stdin for the container it is to be."""
    env = {k: v for k, v in backend._container_env(launch, mode, [], config).items()
           if k not in GIVEN}  # runsc restores the snapshot's environment; these come on stdin
    await asyncio.to_thread(_fill, backend.workdir / name, place / "root", backend.run_as)
    return await backend._spawn(name, mode, env, cgroups.limits_for(launch), [], stdin=True,
                                layers=layers, block_network=launch.block_network, image=config,
                                restore=(place, Path(meta["root"])))


async def _take_spare(backend: LocalBackend, launch: Launch, key: str) -> Process | None:
    """The snapshot's spare, restored ahead (or still being restored), made this container's:
    its cgroup given the container's limits, never renamed (runsc restores into it by that
    name and removes it by that name); None if there is none alive."""
    p = backend.templates.spares.pop(key, None)
    if p is None:
        return None
    try:
        if p.proc.returncode is not None:
            raise OSError("it ended")
        if p.group is not None:
            if not await cgroups.joined(p.group, p.proc):
                raise OSError("it never joined its cgroup")
            await asyncio.to_thread(p.group.apply, cgroups.limits_for(launch))
    except OSError:
        await backend._discard(p)
        return None
    return p


def _spare_soon(backend: LocalBackend, launch: Launch, mode: str, layers: list[Path],
                config: dict[str, Any], place: Path, meta: dict[str, Any]) -> None:
    """Restore the next container's sandbox ahead, as templates keep a fork ready: a container
    then only gives it its identity. An untaken spare goes after TEMPLATE_IDLE seconds."""
    t, key = backend.templates, str(meta.get("key"))
    if key in t.spares or key in t.sparing or backend._closed:
        return
    t.sparing.add(key)

    async def make() -> None:
        try:
            p = await _launch(backend, launch, mode, layers, config, place, meta,
                              ids.new_template_key())
        except (OSError, KeyError, TypeError):
            return  # the next container restores on its own and says what is wrong
        finally:
            t.sparing.discard(key)
        t.spares[key] = p

        def idle() -> None:
            if t.spares.get(key) is p:
                del t.spares[key]
                backend._background(backend._discard(p))

        asyncio.get_running_loop().call_later(settings.TEMPLATE_IDLE.get(), idle)

    backend._background(make())


def _fill(root: Path, saved: Path, owner: tuple[int, int] | None) -> None:
    """A restored container's directory: the snapshot's, its own copy, owned by its user."""
    shutil.copytree(saved, root, symlinks=True)
    if owner is not None:
        for path in [root, *root.rglob("*")]:
            os.lchown(path, *owner)


def _ago(when: float) -> str:
    seconds = max(0.0, time.time() - when)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
