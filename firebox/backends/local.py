"""The local backend: each container is a child process of the control plane on this machine.

To start containers fast it keeps a few *standby* runtimes: processes already launched under
the default isolation, with Python and firebox imported, waiting on stdin. Starting a container
without GPUs takes one, gives it the container's limits and environment, and launches a
replacement in the background; a cold launch is the fallback.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from ..images import layers as images
from ..wire import ids, settings
from ..wire.spec import DEFAULTS
from . import bytecode, cgroups, gpus, isolation, netns, stored, templates
from .base import CapacityReport, Launch, NodeCapacity, OnExit, OnOutput, describe_exit
from .isolation import image_root
from .local_sandboxes import LocalSandboxes
from .templates import LINE_PIECE, Process, Templates

log = logging.getLogger("firebox.backends.local")

NETNS_POOL = 2  # network namespaces made ahead for cold starts


class LocalBackend:
    def __init__(self, workdir: Path, on_output: OnOutput, on_exit: OnExit, *,
                 isolation_mode: str | None = None, hidden: Sequence[Path] = (),
                 standby_env: dict[str, str] | None = None,
                 server_socket: Path | None = None, ca_bundle: Path | None = None) -> None:
        self.workdir = workdir
        self.ca_bundle = ca_bundle  # the certificates containers trust (isolation.trust_env)
        self.server_socket = server_socket
        self.on_output = on_output
        self.on_exit = on_exit
        self.isolation = isolation.check_mode(isolation_mode or isolation.default_mode())
        # Never visible inside a container: the state directory (database, blobs, the other
        # containers' directories) and the client config with its token.
        self.hidden = [workdir, *hidden]
        self.cgroups = cgroups.available()
        if self.cgroups:
            cgroups.sweep_stale()
        if not self.cgroups:
            log.warning("no writable cgroups here (v1, or v2 with cpu, memory and pids): "
                        "containers run without cpu, memory and process limits")
        # Sandboxes hide the whole state directory, not only the containers' part of it.
        self.sandboxes = LocalSandboxes(workdir.parent, [workdir.parent, *self.hidden],
                                        self.cgroups, ca_bundle)
        # Containers are walled in a network namespace of their own: with egress through the
        # host where this server can make one (root, iproute2, nftables) and the operator has
        # not turned it off, else loopback only. Sandboxes' allowlists need the same tables.
        self.netpool: netns.Pool | None = None
        if netns.available():
            try:
                netns.start()
                if settings.CONTAINER_EGRESS.get():
                    self.netpool = netns.Pool(NETNS_POOL)
            except netns.NetworkUnavailable as exc:
                log.warning("containers get loopback only, no egress: %s", exc)
        # A server run as root runs containers as nobody; one run as a user, as that user.
        self.run_as = ((isolation.CONTAINER_UID, isolation.CONTAINER_GID) if os.geteuid() == 0
                       else None)
        if server_socket is not None and self.run_as is not None:
            # The containers' user must be able to connect to it.
            os.chown(server_socket, 0, isolation.CONTAINER_GID)
            os.chmod(server_socket, 0o660)
        self.procs: dict[str, Process] = {}  # by container id
        self.templates = Templates()
        self.standby: list[Process] = []
        self.standby_env = dict(standby_env or {})
        self.standby_size = settings.STANDBY_RUNTIMES.get()
        if self.isolation == isolation.GVISOR or not self.standby_env:
            self.standby_size = 0
        self._refilling = False
        self._closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        workdir.mkdir(parents=True, exist_ok=True)
        bytecode.compile_runtime()

    def capacity(self) -> CapacityReport:
        """This machine: its cores and memory (FIREBOX_CPU and FIREBOX_MEMORY_MB override them)
        and its GPUs, or the fake inventory of FIREBOX_FAKE_GPUS."""
        cores = float(settings.CPU.get() or os.cpu_count() or 1)
        node = NodeCapacity(socket.gethostname(), cores, cgroups.machine_memory_mb() * cgroups.MIB,
                            tuple(gpus.inventory()))
        return CapacityReport((node,))

    # ---- starting --------------------------------------------------------------------------

    def _standby_fits(self, launch: Launch, mode: str, volumes: list[str], layers: Sequence[object]
                      ) -> bool:
        # A standby runtime started without the image's Python path and files: never for one.
        return (not launch.gpus and not volumes and not layers and not launch.block_network
                and mode == self.isolation)

    def takes_standby(self, launch: Launch) -> bool:
        try:
            mode = isolation.check_mode(launch.isolation or self.isolation)
            volumes = isolation.volumes_at_path(
                mode, json.loads(launch.env.get(settings.VOLUMES.name) or "{}"))
        except Exception:
            return False  # start will say why
        layers = json.loads(launch.env.get(settings.IMAGE_LAYERS.name) or "[]")
        return bool(self.standby) and self._standby_fits(launch, mode, volumes, layers)

    async def start(self, launch: Launch) -> None:
        mode = isolation.check_mode(launch.isolation or self.isolation)
        volumes = isolation.volumes_at_path(mode, json.loads(launch.env.get(settings.VOLUMES.name)
                                                             or "{}"))
        layers = [Path(p) for p in json.loads(launch.env.get(settings.IMAGE_LAYERS.name) or "[]")]
        if launch.block_network and (mode == isolation.PROCESS or self.server_socket is None):
            raise isolation.IsolationUnavailable(
                "block_network=True needs isolation='namespaces' or 'gvisor' (this container "
                f"has {mode!r}); choose one of them for it or drop block_network.")
        config = json.loads(launch.env.get(settings.IMAGE_CONFIG.name) or "{}")
        if config.get("rootfs") and mode == isolation.PROCESS:
            raise isolation.IsolationUnavailable(
                "A registry image is the container's whole root, which needs "
                "isolation='namespaces' or 'gvisor' (this server runs containers as plain "
                "processes); start it with FIREBOX_ISOLATION=namespaces.")
        snapshot = templates.Templates.key_for(launch.env, mode)
        if snapshot is not None and await (
                stored.start(self, launch, mode, volumes, layers, config)
                if mode == isolation.GVISOR else
                templates.start(self, launch, mode, volumes, layers, config, *snapshot)):
            return
        if self._standby_fits(launch, mode, volumes, layers) and await self._assign(launch):
            return
        env = self._container_env(launch, mode, volumes, config)
        p = await self._spawn(launch.container_id, mode, env, cgroups.limits_for(launch),
                              launch.gpus, volumes=volumes, layers=layers,
                              block_network=launch.block_network, image=config)
        p.container_id = launch.container_id
        p.memory_limit_mb = cgroups.memory_limit_for(launch)
        self.procs[launch.container_id] = p
        if p.image_files_missing:
            self.on_output(launch.container_id, "stderr", (
                "firebox: without isolation only the image's Python packages, environment and "
                "workdir apply; its files (apt_install, run_commands, add_local_* at absolute "
                "paths) need isolation='namespaces' or 'gvisor'."))

    def _container_env(self, launch: Launch, mode: str, volumes: Sequence[str],
                       config: dict[str, Any]) -> dict[str, str]:
        env = self._env(launch.container_id, mode, launch.gpus)
        if config.get("rootfs"):  # none of the host's environment: the image's own
            env = {k: v for k, v in env.items() if k not in os.environ}
            env["PATH"] = image_root.DEFAULT_PATH
        env.update(launch.env)
        if volumes:
            env[settings.VOLUMES_AT_PATH.name] = "1"
        return env

    async def _say(self, container_id: str, line: str) -> None:
        if (room := self.on_output(container_id, "stderr", line)) is not None:
            await room

    async def _assign(self, launch: Launch) -> bool:
        """Hand the container to a standby runtime, if one is ready and can take its limits."""
        try:
            return await self._take_standby(launch)
        finally:
            self._refill_soon()

    async def _take_standby(self, launch: Launch) -> bool:
        while self.standby:
            p = self.standby.pop(0)
            if p.proc.returncode is not None or p.proc.stdin is None:
                continue
            try:
                if p.group is not None:
                    # Renamed (v1) or emptied (v2) before its process joined it, the cgroup
                    # would be gone when the process's shell writes itself into it.
                    if not await cgroups.joined(p.group, p.proc):
                        raise OSError(f"standby {p.key} never joined its cgroup")
                    await asyncio.to_thread(cgroups.retarget, p.group, cgroups.limits_for(launch),
                                            launch.container_id)
                if p.link is not None:
                    await asyncio.to_thread(netns.refresh, p.link)
                env = {**self._env(launch.container_id, p.mode, []), **launch.env,
                       settings.CONTAINER_ROOT.name: str(p.sandbox.root)}
                if p.mode != isolation.PROCESS:
                    env.pop(settings.PARENT_PID.name)  # inside, its parent is the sandbox's init
                p.container_id = launch.container_id
                p.memory_limit_mb = cgroups.memory_limit_for(launch)
                self.procs[launch.container_id] = p
                p.proc.stdin.write(json.dumps(env).encode() + b"\n")
                await p.proc.stdin.drain()
                p.proc.stdin.close()
                return True
            except (OSError, ConnectionError):  # it died, or already uses more than allowed
                self.procs.pop(launch.container_id, None)
                p.container_id = None
                await self._discard(p)
        return False

    def _refill_soon(self) -> None:
        if self._refilling or self._closed or len(self.standby) >= self.standby_size:
            return
        self._refilling = True
        self._background(self._refill())

    async def _refill(self) -> None:
        try:
            while not self._closed and len(self.standby) < self.standby_size:
                key = ids.new_standby_key()
                env = {**self._env(key, self.isolation, []), **self.standby_env,
                       settings.STANDBY.name: "1"}
                limits = cgroups.Limits(DEFAULTS["cpu"], None, DEFAULTS["memory"], None)
                try:
                    p = await self._spawn(key, self.isolation, env, limits, [], stdin=True)
                except Exception:
                    log.exception("could not start a standby runtime")
                    return
                self.standby.append(p)
        finally:
            self._refilling = False

    def start_standby(self) -> None:
        """Launch the standby runtimes (called once the server listens)."""
        self._fill_netns()
        self._refill_soon()

    def _fill_netns(self) -> None:
        if self.netpool is None or self._closed:
            return
        self._background(self._fill_netns_now())

    async def _fill_netns_now(self) -> None:
        assert self.netpool is not None
        try:
            await asyncio.to_thread(self.netpool.fill)
        except netns.NetworkUnavailable as exc:
            log.warning("could not make a network namespace ahead: %s", exc)

    async def connect(self, container_id: str, port: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to a container's port, made as a client inside the container would:
        in its network namespace to 127.0.0.1 (bubblewrap), to its address (gVisor, whose own
        netstack holds its loopback: its server must listen on 0.0.0.0), or on the host's
        loopback (process isolation)."""
        p = self.procs.get(container_id)
        if p is None or p.link is None:
            return await asyncio.open_connection("127.0.0.1", port)
        if p.mode == isolation.GVISOR:
            return await asyncio.open_connection(p.link.inner_ip, port)
        sock = await asyncio.to_thread(netns.connect_inside, p.link.path, port, 10.0)
        sock.setblocking(False)
        return await asyncio.open_connection(sock=sock)

    def _env(self, key: str, mode: str, gpu_indices: Sequence[int]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(settings.PREFIX)}
        env.update({
            "PYTHONUNBUFFERED": "1",
            settings.CONTAINER_ROOT.name: str(self.workdir / key),
            settings.ISOLATION.name: mode,
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpu_indices)),
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # the order nvidia-smi and NVML number them
            settings.PARENT_PID.name: str(os.getpid()),
        })
        if self.ca_bundle is not None:  # under the image's and the user's own settings
            inside = str(self.ca_bundle) if mode == isolation.PROCESS else isolation.CA_BUNDLE
            env.update(isolation.trust_env(inside))
        if self.server_socket is not None:
            inside = str(self.server_socket) if mode == isolation.PROCESS else isolation.SOCKET
            env[settings.SERVER_SOCKET.name] = inside
        return env

    async def _spawn(self, key: str, mode: str, env: dict[str, str], limits: cgroups.Limits,
                     gpu_indices: Sequence[int], stdin: bool = False,
                     volumes: Sequence[str] = (), layers: Sequence[Path] = (),
                     block_network: bool = False, image: dict[str, Any] | None = None,
                     pass_fds: Sequence[int] = (),
                     restore: tuple[Path, Path] | None = None) -> Process:
        """restore: (a stored snapshot, its own directory's path in it), under gVisor."""
        root = self.workdir / key
        root.mkdir(parents=True, exist_ok=restore is not None)  # a restore's is filled first
        rooted = bool(image and image.get("rootfs"))
        owner = self.run_as if mode != isolation.PROCESS else None
        if rooted and image is not None:
            image_root.check_python()
            owner, home = image_root.image_user(images.root_layers(list(layers)),
                                                image.get("user"), mode, owner)
            env.setdefault("HOME", home)
        if owner is not None:
            os.chown(root, *owner)
        view = None
        if rooted:
            view = images.rooted_view(list(layers), env, self._image_scratch(key))
        elif layers and mode in (isolation.NAMESPACES, isolation.GVISOR):
            view = images.isolated_view(list(layers), env, self._image_scratch(key),
                                        python_at_host_path=mode == isolation.GVISOR)
        elif layers:
            view = images.process_view(list(layers), env)
        if view is not None:
            env = view.env
        at_path = {}
        for mount_path in volumes:  # each volume's working copy, bound at its mount path
            at_path[mount_path] = root / "volumes" / mount_path.strip("/")
            at_path[mount_path].mkdir(parents=True)
            for d in [at_path[mount_path], *at_path[mount_path].parents]:
                if d == root or owner is None:
                    break
                os.chown(d, *owner)
        sandbox = isolation.Walls(
            container_id=key,
            root=root,
            hidden=self.hidden,
            devices=gpus.device_nodes(list(gpu_indices)),
            scratch=self.workdir.parent / "bundles" / key,
            runsc_root=self.workdir.parent / "runsc",
            volumes=at_path,
            block_network=block_network,
            ca_bundle=self.ca_bundle,
        )
        link = None
        if mode != isolation.PROCESS:
            sandbox.server_socket = self.server_socket
            if owner is not None:
                sandbox.uid, sandbox.gid = owner
                if owner[1] != isolation.CONTAINER_GID and self.run_as is not None:
                    sandbox.groups = [isolation.CONTAINER_GID]  # the server socket's group
            if not block_network and self.netpool is not None:
                link = await asyncio.to_thread(self.netpool.take)
                sandbox.netns = link.path
            else:
                sandbox.block_network = True
        if view is not None:
            sandbox.mount_lines, sandbox.image_binds = view.mount_lines, view.binds
            sandbox.image_root, sandbox.image_upper = view.root, view.upper
            sandbox.image_lowers = view.lowers
        if mode == isolation.GVISOR:
            sandbox.preload = await asyncio.to_thread(isolation.statx_shim,
                                                      self.sandboxes.base_layers)
            sandbox.restore_image, sandbox.root_inside = restore or (None, None)
        if mode != isolation.PROCESS:
            # Inside, the runtime's parent is the sandbox's init, which dies with us
            # (--die-with-parent), not this process: the runtime must not check for it.
            sandbox.extra += ["--unsetenv", settings.PARENT_PID.name]
        group = None
        if self.cgroups:
            group = await asyncio.to_thread(cgroups.Cgroup.create, key, limits)
            sandbox.cgroup = f"/{cgroups.PARENT}/{key}"
        runtime = [sys.executable, "-m", "firebox.runtime"]
        if rooted and image is not None:  # through the image's entrypoint, as Modal runs it
            runtime = [*(image.get("entrypoint") or []), *image_root.host_exec(runtime)]
        argv = isolation.launcher(mode, runtime, sandbox, env)
        if group is not None:
            argv = isolation.in_cgroup(argv, group.procs_files)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=root,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=LINE_PIECE,
                pass_fds=pass_fds,
            )
        except BaseException:
            if group is not None:
                await asyncio.to_thread(group.remove)
            if link is not None:
                await asyncio.to_thread(netns.remove, link)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(self._image_scratch(key), ignore_errors=True)
            raise
        p = Process(key, proc, mode, sandbox, group,
                    image_files_missing=bool(view and mode == isolation.PROCESS
                                             and view.has_files), link=link)
        self._fill_netns()
        self._watch_soon(p)
        return p

    def _watch_soon(self, p: Process) -> None:
        self._background(self._watch(p))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _image_scratch(self, key: str) -> Path:
        """Where a container's image overlays keep their writes; gone when it exits."""
        return self.workdir.parent / "image-mounts" / key

    # ---- watching --------------------------------------------------------------------------

    async def _watch(self, p: Process) -> None:
        proc = p.proc
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(self._pump(p, "stdout", proc.stdout),
                             self._pump(p, "stderr", proc.stderr))
        code = await proc.wait()
        ended = time.time()
        if p.mode != isolation.PROCESS and code > 128:
            code = -(code - 128)  # bwrap and runsc report a signal as 128 + its number
        cause = describe_exit(code)
        if p.group is not None:
            if p.group.oom_killed() and p.memory_limit_mb:
                cause = (f"was killed for using more than its {p.memory_limit_mb} MiB "
                         "memory limit")
            await asyncio.to_thread(p.group.remove)
        if p.template is not None:
            self.templates.drop(p.template)
        if p.forked_from is None:  # a fork's namespaces and files are its template's
            await self._release(p)
        if p in self.standby:
            self.standby.remove(p)
        cid = p.container_id
        if p.exited_unseen() or cid is None:
            if not self._closed and code != 0:
                log.warning("runtime %s (a standby or a template) %s", p.key, cause)
            return
        self.procs.pop(cid, None)
        try:
            self.on_exit(cid, code, cause, ended)
        except Exception:
            log.exception("exit handler failed for %s", cid)

    async def _release(self, p: Process) -> None:
        """Remove what a launched process had of its own: its files, its network namespace."""
        if p.mode == isolation.GVISOR:
            await self._forget_gvisor(p.sandbox)
        if p.link is not None:  # ~30 ms of `ip`: not before the exit is reported
            self._background(asyncio.to_thread(netns.remove, p.link))
        shutil.rmtree(p.sandbox.root, ignore_errors=True)
        shutil.rmtree(self._image_scratch(p.key), ignore_errors=True)

    async def _forget_gvisor(self, sandbox: isolation.Walls) -> None:
        proc = await asyncio.create_subprocess_exec(
            "runsc", "--root", str(sandbox.runsc_root), "delete", "--force",
            sandbox.container_id, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        if sandbox.scratch is not None:
            shutil.rmtree(sandbox.scratch, ignore_errors=True)

    async def _pump(self, p: Process, stream: str, reader: asyncio.StreamReader) -> None:
        """Pass a container's output on a line at a time. A line longer than LINE_PIECE goes
        on as several lines of that length, the last with its end: nothing of it is dropped,
        and no more of it than a piece is ever in memory."""
        # Incremental: a character cut between two pieces is decoded whole, in the second.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # the output's end, without a newline (empty at EOF)
            except asyncio.LimitOverrunError:  # no newline in the next LINE_PIECE bytes
                line = await reader.read(LINE_PIECE)
            if not line:
                return
            text = decoder.decode(line).rstrip("\n")
            if p.saw(stream, text):
                continue
            if p.container_id is not None:
                room = self.on_output(p.container_id, stream, text)
                if room is not None:  # unread, the pipe fills and the container's prints wait
                    await room
            else:
                log.warning("runtime %s (a standby or a template): %s", p.key, text)

    # ---- stopping --------------------------------------------------------------------------

    async def kill(self, container_id: str) -> None:
        p = self.procs.get(container_id)
        if p is not None:
            p.killed = True
            await self._kill(p)

    async def _kill(self, p: Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, 9)
        if p.group is not None:  # processes that left the session (gVisor's sandbox, daemons)
            await asyncio.to_thread(p.group.kill_all)

    async def _discard(self, p: Process) -> None:
        if p.proc.stdin is not None:
            p.proc.stdin.close()  # EOF: an unassigned standby exits by itself
        await self._kill(p)

    async def close(self) -> None:
        self._closed = True
        self.templates.close()
        for p in [*self.standby, *self.templates.spares.values()]:
            await self._discard(p)
        for cid in list(self.procs):
            await self.kill(cid)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        if self.netpool is not None:
            await asyncio.to_thread(self.netpool.close)
        if netns.available():
            await asyncio.to_thread(netns.shutdown)
