"""The image builder: turns an Image's steps into cached layers on the control plane.

Each layer is named by the hash of its parent layer, its step and the step's inputs (file
contents for copies), so an unchanged step is never built twice and a changed one rebuilds
itself and every step after it. Python packages install with uv into the layer's python/
directory; apt_install and run_commands run in a build container (overlayfs over the host's
system directories, in a private mount namespace, under bubblewrap) whose writes become the
layer. A build container is walled like a function container, though root inside: none of the
host's secrets or home directories, and a network namespace of its own (egress only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import cgroups, netns
from ..backends.isolation import (
    SANDBOX_FROM_HOST,
    SandboxRoot,
    in_cgroup,
    sandbox_base,
    visible_hidden,
)
from ..store.blobs import BlobStore
from ..wire import settings
from .layers import NEVER

Emit = Callable[[dict[str, Any]], Awaitable[None]]
FORMAT = 1  # bump when the layout of a layer changes: every layer is then built afresh
LOG_TAIL = 40  # lines of a failed step's log shown to the caller
BUILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What root may do in a build container: enough for apt (files, owners, its _apt user), never
# mounts, device nodes, raw I/O, modules or tracing, which would reach past the overlays.
BUILD_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
              "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
              "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_SETFCAP")
FS_KINDS = ("pip", "apt", "run", "copy", "mount")
LAYER_ID = re.compile(r"^[0-9a-f]{64}$")
# A build step's cgroup: like a container's, so one tenant's build cannot take the machine.
BUILD_CPU = 2.0  # cores it may use at most
BUILD_PIDS = 4096
# Where each step's mask of the host's secrets is made: outside the state directory, which may
# be under /var, and overlayfs refuses a lower dir (the mask's var/) under another (/var).
MASKS = Path("/run/firebox-build-masks")
NO_NETWORK = ("build containers on this server have no network (FIREBOX_CONTAINER_EGRESS=0, or "
              "no root, ip or nft), so a step that downloads fails: ask its operator for egress")


class StepExited(RuntimeError):
    """A step's process exited with an error; its output already says why."""


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


def can_contain() -> bool:
    """Whether build containers can run here."""
    return shutil.which("bwrap") is not None and shutil.which("unshare") is not None


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
        self.network = network
        self.layers_dir = root / "layers"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        for part in self.layers_dir.glob("*.part"):  # builds a stopped server left unfinished
            shutil.rmtree(part, ignore_errors=True)
        self.blobs = blobs
        self.hidden = list(hidden)
        self.locks: dict[str, asyncio.Lock] = {}

    def path(self, layer: str) -> Path:
        if not LAYER_ID.match(layer):
            raise ValueError(f"not a layer id: {layer!r}")
        return self.layers_dir / layer

    def exists(self, layer: str) -> bool:
        return self.path(layer).is_dir()

    async def build(self, request: dict[str, Any], emit: Emit,
                    record: Callable[[str, dict[str, Any]], Awaitable[None]],
                    workspace_id: str) -> Built:
        """Build (or find) every layer of the request, reporting progress through emit;
        record(layer, info) stores a layer's outcome. Raises BuildFailed.

        Layers are the workspace's own: a step's result depends on more than its recipe (a
        package's build script can leave things in the uv cache for later steps), so a layer
        one workspace built is never handed to another."""
        python = host_python()
        if request.get("python") != python:
            raise BuildFailed("debian_slim", 0, f"The client runs Python {request.get('python')}"
                              f" but this server's containers run Python {python}; use a "
                              f"client with Python {python}.")
        steps: list[dict[str, Any]] = list(request.get("steps") or [])
        mounts: list[dict[str, Any]] = list(request.get("mounts") or [])
        total = len(steps) + len(mounts)
        out = Built([], {}, None, workspace_id=workspace_id)
        parent = f"workspace {workspace_id}"
        for i, step in enumerate(steps, 1):
            kind = step.get("kind")
            label = str(step.get("label") or kind)
            lid = layer_id(parent, step, python)
            parent = lid
            if kind == "env":
                out.env.update(step.get("env") or {})
                await emit({"t": "step", "index": i, "total": total, "label": label,
                            "cached": True})
                continue
            if kind == "workdir":
                out.workdir = str(step["path"])
                await emit({"t": "step", "index": i, "total": total, "label": label,
                            "cached": True})
                continue
            if kind not in FS_KINDS:
                raise BuildFailed(label, i, f"unknown step kind {kind!r}")
            await self._layer(lid, i, total, label, step, out, emit, record)
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
                     out: Built, emit: Emit,
                     record: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        lock = self.locks.setdefault(lid, asyncio.Lock())
        async with lock:
            if self.exists(lid):
                await emit({"t": "step", "index": index, "total": total, "label": label,
                            "cached": True, "layer": lid})
                return
            await emit({"t": "step", "index": index, "total": total, "label": label,
                        "cached": False, "layer": lid})
            started = time.monotonic()
            part = self.layers_dir / f"{lid}.part"
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            lines: list[str] = []

            async def log(text: str) -> None:
                lines.append(text)
                await emit({"t": "log", "index": index, "text": text})

            try:
                await self._run_step(step, part, out, log)
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
            await emit({"t": "built", "index": index, "layer": lid, "size_bytes": size,
                        "seconds": round(time.monotonic() - started, 2)})

    async def _run_step(self, step: dict[str, Any], part: Path, out: Built,
                        log: Callable[[str], Awaitable[None]]) -> None:
        kind = step["kind"]
        if kind in ("copy", "mount"):
            await asyncio.to_thread(self._copy_files, step, part)
        elif kind == "pip":
            await self._pip(step, out, part, log)
        elif kind == "apt":
            pkgs = " ".join(shlex.quote(p) for p in step["packages"])
            install = f"apt-get install -y --no-install-recommends {pkgs}"
            script = f"{install} || {{ apt-get update && {install}; }}"
            env = {**out.env, "DEBIAN_FRONTEND": "noninteractive"}
            await self._in_container(script, env, None, out, part, log)
        elif kind == "run":
            script = " && ".join(f"( {c} )" for c in step["commands"])
            env = {**out.env, **(step.get("env") or {})}
            await self._in_container(script, env, out.workdir, out, part, log)

    def _copy_files(self, step: dict[str, Any], part: Path) -> None:
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
            write(part / base / rel, digest, mode)
        for rel, (digest, mode) in (step.get("python") or {}).items():
            write(part / "python" / rel, digest, mode)

    async def _pip(self, step: dict[str, Any], out: Built, part: Path,
                   log: Callable[[str], Awaitable[None]]) -> None:
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
        binds += [(str(p), str(p), True) for p in self._python_dirs(uv)]
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
                await self._stream(argv, env, log)
                return
            await self._in_container(shlex.join(argv), env, None, out, part, log, binds=binds,
                                     keep_files=False)

    def _python_dirs(self, uv: Path) -> list[Path]:
        """What a pip step's uv and Python need that a build container lacks: the venv,
        Python's own prefix and uv's directory, unless they are in the system dirs or hidden."""
        system = [Path("/") / name for name in SANDBOX_FROM_HOST]
        hidden = [h.resolve() for h in self.hidden]
        wanted = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                  uv.resolve().parent}
        wanted = {p for p in wanted if not any(p.is_relative_to(q) for q in [*system, *hidden])}
        return sorted(p for p in wanted if not any(p != q and p.is_relative_to(q)
                                                   for q in wanted))

    async def _in_container(self, script: str, env: dict[str, str], workdir: str | None,
                            out: Built, part: Path, log: Callable[[str], Awaitable[None]],
                            binds: Sequence[tuple[str, str, bool]] = (),
                            keep_files: bool = True) -> None:
        """Run script in a build container over the layers so far. keep_files: its writes
        become the layer (else they are dropped, and only what binds wrote stays).

        Root inside keeps BUILD_CAPS, CAP_DAC_OVERRIDE among them, so the wall is what it
        sees: the host's system dirs and /var with what not everyone may read taken out (a
        mask made for each step, so a secret made since the last one is out too), the host's
        other top-level directories empty, the layers, and binds; and a network namespace of
        its own, with egress (never the host itself) where the server gives containers it."""
        if not can_contain():
            raise RuntimeError("apt_install and run_commands need bubblewrap and unshare on the "
                               "server (Debian packages bubblewrap and util-linux).")
        fs_layers = [self.path(lid) for lid in reversed(out.layers)]
        for layer in fs_layers:  # SandboxRoot reads both parts of every layer
            (layer / "upper").mkdir(exist_ok=True)
            (layer / "root").mkdir(exist_ok=True)
        fs = SandboxRoot(part / "build", fs_layers,
                         empty=[n for n in os.listdir("/") if n not in SANDBOX_FROM_HOST])
        MASKS.mkdir(mode=0o700, exist_ok=True)
        mask_dir = Path(tempfile.mkdtemp(dir=MASKS))
        link = None
        try:
            fs.masks = await asyncio.to_thread(sandbox_base, mask_dir, False)
            mounts = await asyncio.to_thread(fs.prepare)
            argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    " && ".join([*mounts, 'exec "$@"']), "firebox-build",
                    *self._bwrap(script, env, workdir, out, fs, binds)]
            await log(f"$ {script}")
            try:
                if self.network is not None:
                    link = await asyncio.to_thread(self.network.take)
                    argv = ["nsenter", f"--net={link.path}", *argv]
                await self._stream(argv, {"PATH": BUILD_PATH}, log)
            except StepExited as exc:
                if self.network is None:
                    raise StepExited(f"{exc}; {NO_NETWORK}") from None
                raise
            finally:
                if keep_files:
                    await asyncio.to_thread(self._collect, fs, part)
                else:
                    await asyncio.to_thread(shutil.rmtree, fs.base, True)
        finally:
            if link is not None:
                await asyncio.to_thread(netns.remove, link)
            await asyncio.to_thread(shutil.rmtree, mask_dir, True)

    def _bwrap(self, script: str, env: dict[str, str], workdir: str | None, out: Built,
               fs: SandboxRoot, binds: Sequence[tuple[str, str, bool]]) -> list[str]:
        """The bubblewrap command that runs script as root over fs, once its overlays are
        mounted: the earlier layers' python/ dirs on PYTHONPATH, binds in place, the hidden
        directories it would otherwise see covered."""
        py = [self.path(lid) / "python" for lid in reversed(out.layers)
              if (self.path(lid) / "python").is_dir()]
        inner = ["bwrap", "--bind", str(fs.rootfs), "/", "--dev", "/dev", "--proc", "/proc",
                 "--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--hostname", "firebox-build", "--die-with-parent", "--new-session",
                 "--clearenv", "--cap-drop", "ALL"]
        for cap in BUILD_CAPS:
            inner += ["--cap-add", cap]
        if self.network is None:
            inner.append("--unshare-net")  # loopback only, as the server's containers get
        full_env = {"PATH": BUILD_PATH, "HOME": "/root", "LANG": "C.UTF-8", **env}
        paths = [f"/.image/python/{i}" for i in range(len(py))]
        if paths:
            full_env["PYTHONPATH"] = ":".join(paths)
        for k, v in full_env.items():
            inner += ["--setenv", k, v]
        for layer_python, dest in zip(py, paths, strict=True):
            inner += ["--ro-bind", str(layer_python), dest]
        for src, dest, ro in binds:
            inner += ["--ro-bind" if ro else "--bind", src, dest]
        at_own_path = [Path(src) for src, dest, _ro in binds if src == dest]  # Python's dirs
        for p in [*visible_hidden(self.hidden),
                  *(h for h in {h.resolve() for h in self.hidden}
                    if any(h.is_relative_to(b) for b in at_own_path))]:
            inner += ["--tmpfs", str(p)]
        if workdir:
            inner += ["--dir", workdir, "--chdir", workdir]
        return [*inner, "--", "/bin/sh", "-c", "set -e\n" + script]

    def _collect(self, fs: SandboxRoot, part: Path) -> None:
        """Once the build container is gone: its upper dirs and new top-level entries become
        the layer."""
        build = part / "build"
        upper = part / "upper"
        (build / "upper").rename(upper)
        for hidden in visible_hidden(self.hidden):
            # Covering it copied its mount point (and parents) up: not the layer's, and its
            # name is the server's.
            d = upper / hidden.relative_to("/")
            while d != upper and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
                d = d.parent
        for d in list(upper.iterdir()):
            if d.name in NEVER or (d.is_dir() and not any(d.iterdir())):
                shutil.rmtree(d) if d.is_dir() else d.unlink()
        root = part / "root"
        root.mkdir(exist_ok=True)
        host = set(os.listdir("/"))
        for entry in fs.rootfs.iterdir():
            if entry.name in host or entry.name in NEVER:
                continue
            entry.rename(root / entry.name)
        shutil.rmtree(build, ignore_errors=True)

    async def _stream(self, argv: list[str], env: dict[str, str],
                      log: Callable[[str], Awaitable[None]]) -> None:
        memory = settings.IMAGE_BUILD_MEMORY_MB.get()
        group = None
        if cgroups.available():
            group = await asyncio.to_thread(
                cgroups.Cgroup.create, f"build-{os.urandom(6).hex()}",
                cgroups.Limits(BUILD_CPU, BUILD_CPU, min(memory, 1024), memory, BUILD_PIDS))
            argv = in_cgroup(argv, group.procs_files)
        try:
            await self._run(argv, env, log)
        except StepExited:
            if group is not None and group.oom_killed():
                raise StepExited(f"the step was killed for using more than {memory} MiB of "
                                 "memory (FIREBOX_IMAGE_BUILD_MEMORY_MB on the server)") from None
            raise
        finally:
            if group is not None:
                await asyncio.to_thread(group.kill_all)
                await asyncio.to_thread(group.remove)

    async def _run(self, argv: list[str], env: dict[str, str],
                   log: Callable[[str], Awaitable[None]]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        assert proc.stdout is not None
        limit = settings.IMAGE_STEP_TIMEOUT.get()
        try:
            async with asyncio.timeout(limit):
                while True:
                    try:
                        line = await proc.stdout.readline()
                    except ValueError:  # a line longer than the stream limit: take what is there
                        line = await proc.stdout.read(65536)
                    if not line:
                        break
                    await log(line.decode("utf-8", "replace").rstrip("\n"))
                code = await proc.wait()
        except TimeoutError:
            raise StepExited(f"the step ran longer than {limit:.0f} s and was stopped "
                             "(FIREBOX_IMAGE_STEP_TIMEOUT on the server)") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: its whole process group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if code != 0:
            raise StepExited(f"the step exited with code {code}")

    def remove(self, layer: str) -> int:
        path = self.path(layer)
        if not path.is_dir():
            return 0
        size = dir_size(path)
        shutil.rmtree(path, ignore_errors=True)
        return size
