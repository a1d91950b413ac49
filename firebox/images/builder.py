"""The image builder: turns an Image's steps into cached layers on the control plane.

Each layer is named by the hash of its parent layer, its step and the step's inputs (file
contents for copies), so an unchanged step is never built twice and a changed one rebuilds
itself and every step after it. Python packages install with uv into the layer's python/
directory; apt_install and run_commands run in a build container (overlayfs over the host's
system directories, in a private mount namespace, under bubblewrap) whose writes become the
layer. A build container is walled like a function container, though root inside: none of the
host's secrets or home directories, and a network namespace of its own (egress only): see
build_container.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import netns
from ..store.blobs import BlobStore
from ..wire import build_events
from . import oci
from .build_container import BuildContainers, Log, StepExited, can_contain, stream

Emit = Callable[[dict[str, Any]], Awaitable[None]]
FORMAT = 1  # bump when the layout of a layer changes: every layer is then built afresh
LOG_TAIL = 40  # lines of a failed step's log shown to the caller
FS_KINDS = ("pip", "apt", "run", "copy", "mount", "registry")
CONFIG_KINDS = ("env", "workdir", "user", "entrypoint")  # steps that only change the config
Record = Callable[[str, dict[str, Any]], Awaitable[None]]
LAYER_ID = re.compile(r"^[0-9a-f]{64}$")
class BuildFailed(Exception):
    def __init__(self, label: str, index: int, log_tail: str) -> None:
        super().__init__(f"Image build failed at step {index} ({label}).")
        self.label, self.index, self.log_tail = label, index, log_tail


@dataclass
class Built:
    layers: list[str]  # layer ids with files, oldest first
    env: dict[str, str]
    workdir: str | None
    built: list[str] = field(default_factory=list)  # layers this build made (not cached)
    workspace_id: str = ""  # whose build it is: its layers and uv cache are that workspace's
    # From a registry image: the image is the container's whole root (each layer's rootfs/),
    # run as its user (None: the server's default), through its entrypoint.
    rootfs: bool = False
    user: str | None = None
    entrypoint: list[str] | None = None
    credentials: dict[int, tuple[str, str]] = field(default_factory=dict)  # step -> login

    def config(self) -> dict[str, Any]:
        """What a container of a registry image needs beyond layers, env and workdir."""
        if not self.rootfs:
            return {}
        return {"rootfs": True, "user": self.user, "entrypoint": self.entrypoint}


def _configure(out: Built, step: dict[str, Any]) -> None:
    """A step that sets the image's config: env, workdir, user or entrypoint."""
    kind = step["kind"]
    if kind == "env":
        out.env.update(step.get("env") or {})
    elif kind == "workdir":
        out.workdir = str(step["path"])
    elif kind == "user":
        out.user = str(step["user"]) or None
    elif kind == "entrypoint":
        out.entrypoint = [str(a) for a in step.get("args") or []] or None


def layer_id(parent: str, step: dict[str, Any], python: str) -> str:
    content = {k: v for k, v in step.items() if k != "label"}
    key = json.dumps({"format": FORMAT, "parent": parent, "python": python, "step": content},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def uv_binary() -> str:
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise RuntimeError("uv is not installed on the server; `pip install uv`.") from None
        return found


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


class Builder:
    def __init__(self, root: Path, blobs: BlobStore, hidden: Sequence[Path],
                 network: netns.Pool | None = None) -> None:
        """network: the server's namespaces with egress for containers (the backend's pool);
        None: build containers get loopback only, as the server's containers do."""
        self.root = root
        self.containers = BuildContainers(hidden, network)
        self.layers_dir = root / "layers"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        for part in self.layers_dir.glob("*.part"):  # builds a stopped server left unfinished
            shutil.rmtree(part, ignore_errors=True)
        for pull in (root / "oci").glob("pull-*"):  # and its pulls' layouts
            shutil.rmtree(pull, ignore_errors=True)
        self.pulls = 0  # pulls under way: the blob store is theirs
        self.blobs = blobs
        self.locks: dict[str, asyncio.Lock] = {}

    def path(self, layer: str) -> Path:
        if not LAYER_ID.match(layer):
            raise ValueError(f"not a layer id: {layer!r}")
        return self.layers_dir / layer

    def exists(self, layer: str) -> bool:
        return self.path(layer).is_dir()

    def _below(self, out: Built) -> list[Path]:
        """The layers built so far, newest first: what a build container runs over."""
        return [self.path(lid) for lid in reversed(out.layers)]

    def _python_below(self, out: Built) -> list[Path]:
        """The layers a pip step's uv runs over: of a registry image, none of its root."""
        return [p for p in self._below(out) if not (p / "rootfs").is_dir()
                and not (p / "oci.json").exists()]

    async def build(self, request: dict[str, Any], emit: Emit, record: Record,
                    workspace_id: str,
                    credentials: dict[int, tuple[str, str]] | None = None) -> Built:
        """Build (or find) every layer of the request, reporting progress through emit;
        record(layer, info) stores a layer's outcome. Raises BuildFailed.

        Layers are the workspace's own: a step's result depends on more than its recipe (a
        package's build script can leave things in the uv cache for later steps), so a layer
        one workspace built is never handed to another. credentials: step index -> the
        registry login of a from_registry step (from its Secret, never part of a layer's key)."""
        python = host_python()
        if request.get("python") != python:
            raise BuildFailed("debian_slim", 0, f"The client runs Python {request.get('python')}"
                              f" but this server's containers run Python {python}; use a "
                              f"client with Python {python}.")
        steps: list[dict[str, Any]] = list(request.get("steps") or [])
        mounts: list[dict[str, Any]] = list(request.get("mounts") or [])
        total = len(steps) + len(mounts)
        out = Built([], {}, None, workspace_id=workspace_id, credentials=credentials or {})
        parent = f"workspace {workspace_id}"
        for i, step in enumerate(steps, 1):
            kind = step.get("kind")
            label = str(step.get("label") or kind)
            lid = layer_id(parent, step, python)
            parent = lid
            if kind in CONFIG_KINDS:
                _configure(out, step)
                await emit(build_events.step(i, total, label, cached=True))
                continue
            if kind not in FS_KINDS:
                raise BuildFailed(label, i, f"unknown step kind {kind!r}")
            if kind == "registry" and i != 1:
                raise BuildFailed(label, i, "an image from a registry must start with it: "
                                  "Image.from_registry(...) first, then its other steps")
            step = {**step, "index": i}
            await self._layer(lid, i, total, label, step, out, emit, record)
            if kind == "registry":
                self._take_pulled(lid, out)
            out.layers.append(lid)
        for j, mount in enumerate(mounts, len(steps) + 1):
            # Files added at container start are a layer too, but outside the chain: changing
            # them rebuilds nothing else.
            step = {"kind": "mount", **mount}
            lid = layer_id(f"mount {workspace_id}", step, python)
            await self._layer(lid, j, total, str(mount.get("label")), step, out, emit, record)
            out.layers.append(lid)
        return out

    async def _layer(self, lid: str, index: int, total: int, label: str, step: dict[str, Any],
                     out: Built, emit: Emit, record: Record) -> None:
        lock = self.locks.setdefault(lid, asyncio.Lock())
        async with lock:
            if self.exists(lid):
                await emit(build_events.step(index, total, label, cached=True, layer=lid))
                return
            await emit(build_events.step(index, total, label, cached=False, layer=lid))
            started = time.monotonic()
            part = self.layers_dir / f"{lid}.part"
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            lines: list[str] = []

            async def log(text: str) -> None:
                lines.append(text)
                await emit(build_events.log(index, text))

            try:
                await self._run_step(step, part, out, log, record)
            except BuildFailed:
                raise
            except StepExited as exc:
                await log(str(exc))
                ok = False
            except Exception as exc:
                await log(f"{type(exc).__name__}: {exc}")
                ok = False
            else:
                ok = True
            tail = "\n".join(lines[-LOG_TAIL:])
            if not ok:
                shutil.rmtree(part, ignore_errors=True)
                await record(lid, {"kind": step["kind"], "label": label, "state": "failed",
                                   "size_bytes": 0, "log_tail": tail,
                                   "build_seconds": time.monotonic() - started})
                raise BuildFailed(label, index, tail)
            size = await asyncio.to_thread(dir_size, part)
            part.rename(self.path(lid))
            out.built.append(lid)
            await record(lid, {"kind": step["kind"], "label": label, "state": "built",
                               "size_bytes": size, "log_tail": tail,
                               "build_seconds": time.monotonic() - started})
            await emit(build_events.built(index, lid, size,
                                          round(time.monotonic() - started, 2)))

    async def _run_step(self, step: dict[str, Any], part: Path, out: Built,
                        log: Log, record: Record) -> None:
        kind = step["kind"]
        if kind == "registry":
            await self._pull(step, part, out, log, record)
        elif kind in ("copy", "mount"):
            await asyncio.to_thread(self._copy_files, step, part, out.rootfs)
        elif kind == "pip":
            await self._pip(step, out, part, log)
        elif kind == "apt":
            pkgs = " ".join(shlex.quote(p) for p in step["packages"])
            install = f"apt-get install -y --no-install-recommends {pkgs}"
            script = f"{install} || {{ apt-get update && {install}; }}"
            env = {**out.env, "DEBIAN_FRONTEND": "noninteractive"}
            await self.containers.run(script, env, None, self._below(out), part, log,
                                      rooted=out.rootfs)
        elif kind == "run":
            script = " && ".join(f"( {c} )" for c in step["commands"])
            env = {**out.env, **(step.get("env") or {})}
            await self.containers.run(script, env, out.workdir, self._below(out), part, log,
                                      rooted=out.rootfs)

    async def _pull(self, step: dict[str, Any], part: Path, out: Built, log: Log,
                    record: Record) -> None:
        """Pull the image, unpack the layers this server lacks (each a layer of its own, named
        by its digest and the workspace), and keep what the image is in part/oci.json."""
        tag = str(step["tag"])
        self.pulls += 1
        try:
            image = await oci.pull(tag, self.root / "oci" / "blobs",
                                   out.credentials.get(int(step["index"])), log)
            children = []
            for n, (digest, media) in enumerate(image.layers, 1):
                lid = layer_id(f"workspace {out.workspace_id}",
                               {"kind": "oci-layer", "digest": digest}, "")
                await self._unpack(lid, digest, media, f"{tag} layer {n}/{len(image.layers)}",
                                   log, record)
                children.append(lid)
        finally:
            self.pulls -= 1
        (part / "oci.json").write_text(json.dumps({
            "digest": image.digest, "layers": children, "env": image.env,
            "workdir": image.workdir, "user": image.user, "entrypoint": image.entrypoint,
            "cmd": image.cmd}))
        await log(f"{tag}: {image.digest}, {len(children)} layers")

    async def _unpack(self, lid: str, digest: str, media: str, label: str, log: Log,
                      record: Record) -> None:
        async with self.locks.setdefault(lid, asyncio.Lock()):
            if self.exists(lid):
                await log(f"{digest[:19]}: cached")
                return
            started = time.monotonic()
            part = self.layers_dir / f"{lid}.part"
            shutil.rmtree(part, ignore_errors=True)
            (part / "rootfs").mkdir(parents=True)
            try:
                read = await asyncio.to_thread(oci.unpack, self.root / "oci" / "blobs", digest,
                                               media, part / "rootfs")
            except BaseException:
                shutil.rmtree(part, ignore_errors=True)
                raise
            size = await asyncio.to_thread(dir_size, part)
            part.rename(self.path(lid))
            seconds = time.monotonic() - started
            await record(lid, {"kind": "oci", "label": label, "state": "built",
                               "size_bytes": size, "log_tail": digest,
                               "build_seconds": seconds})
            await log(f"{digest[:19]}: unpacked {read / 1e6:.1f} MB into {size / 1e6:.1f} MB "
                      f"in {seconds:.2f} s")

    def _take_pulled(self, lid: str, out: Built) -> None:
        """A registry step's image becomes the root the later steps build on."""
        pulled = json.loads((self.path(lid) / "oci.json").read_text())
        out.layers += pulled["layers"]
        out.rootfs = True
        out.env.update(pulled.get("env") or {})
        out.workdir = pulled.get("workdir") or out.workdir
        out.user = pulled.get("user") or None
        out.entrypoint = pulled.get("entrypoint") or None

    def _copy_files(self, step: dict[str, Any], part: Path, rooted: bool) -> None:
        def write(dest: Path, digest: str, mode: int) -> None:
            if not dest.resolve().is_relative_to(part.resolve()):
                raise ValueError(f"refusing to write outside the layer: {dest}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.blobs.path(digest), dest)
            dest.chmod(mode)

        for remote, (digest, mode) in (step.get("files") or {}).items():
            rel = Path(remote.lstrip("/"))
            top = rel.parts[0]
            host = Path("/") / top
            base = "upper" if host.is_dir() and not host.is_symlink() else "root"
            write(part / ("rootfs" if rooted else base) / rel, digest, mode)
        for rel, (digest, mode) in (step.get("python") or {}).items():
            write(part / "python" / rel, digest, mode)

    async def _pip(self, step: dict[str, Any], out: Built, part: Path,
                   log: Log) -> None:
        """uv in a build container: a package's build scripts cannot touch the host, and only
        the --target directory becomes the layer. Without bubblewrap (a server whose
        containers run unisolated anyway) uv runs on the host, writing only the layer."""
        contained = can_contain()
        uv = Path(uv_binary())
        (part / "python").mkdir()
        cache = self.root / "uv-cache" / out.workspace_id  # one workspace's never another's
        cache.mkdir(parents=True, exist_ok=True)
        target, cache_at, reqs_at = (("/.image/target", "/.image/uv-cache", "/.image/requirements")
                                     if contained else (str(part / "python"), str(cache), ""))
        # Compiled now: in containers the layer is read-only, so imports could not cache .pyc.
        argv = [str(uv), "pip", "install", "--no-progress", "--compile-bytecode",
                "--target", target, "--python", sys.executable]
        if step.get("index_url"):
            argv += ["--index-url", step["index_url"]]
        if step.get("extra_index_url"):
            argv += ["--extra-index-url", step["extra_index_url"]]
        if step.get("find_links"):
            argv += ["--find-links", step["find_links"]]
        if step.get("pre"):
            argv += ["--prerelease", "allow"]
        if step.get("extra_options"):
            argv += shlex.split(step["extra_options"])
        binds = [(str(part / "python"), target, False), (str(cache), cache_at, False)]
        binds += [(str(p), str(p), True) for p in self.containers.python_dirs(uv)]
        with tempfile.TemporaryDirectory() as tmp:
            reqs_at = reqs_at or tmp
            for n, text in enumerate(step.get("requirements") or []):
                (Path(tmp) / f"requirements-{n}.txt").write_text(text)
                argv += ["-r", f"{reqs_at}/requirements-{n}.txt"]
            binds.append((tmp, reqs_at, True))
            argv += list(step.get("packages") or [])
            host = ("HOME", "PATH") if not contained else ()
            env = {k: v for k, v in os.environ.items()
                   if k.startswith("UV_") or k.lower().endswith("_proxy")
                   or k in ("SSL_CERT_FILE", "SSL_CERT_DIR", *host)}
            # The image's env so far applies, as to every later step (UV_INDEX_URL, say).
            env |= {**out.env, **(step.get("env") or {}), "NO_COLOR": "1",
                    "UV_CACHE_DIR": cache_at}
            if not contained:
                await log("$ " + shlex.join(argv))
                await stream(argv, env, log)
                return
            await self.containers.run(shlex.join(argv), env, None, self._python_below(out), part,
                                      log, binds=binds, keep_files=False)

    def drop_blobs(self) -> int:
        """Empty the pulls' blob store (what was pulled is unpacked into layers by now; a later
        pull fetches again), unless a pull is under way. Returns the bytes freed."""
        blobs = self.root / "oci" / "blobs"
        if self.pulls or not blobs.is_dir():
            return 0
        size = dir_size(blobs)
        shutil.rmtree(blobs, ignore_errors=True)
        return size

    def remove(self, layer: str) -> int:
        path = self.path(layer)
        if not path.is_dir():
            return 0
        size = dir_size(path)
        shutil.rmtree(path, ignore_errors=True)
        return size
