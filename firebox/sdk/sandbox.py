"""Sandbox: a container for untrusted code that you exec commands in, with Modal's names.

`sb = Sandbox.create(app=app)` starts one (under gVisor where runsc is installed, else
bubblewrap namespaces: `sb.isolation` says which); `p = sb.exec("python", "-c", "...")` runs a
command whose `p.stdout`, `p.stderr` and `p.stdin` stream to and from it.

Images: firebox has no general Image yet. `sb.snapshot_filesystem()` returns a SandboxImage
(the sandbox's file system as it is now) that `Sandbox.create(image=...)` takes; without an
image a sandbox sees this machine's file system read-only, with its own writable layer on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import _sync
from .. import client as client_mod
from .._sync import live_classmethod, live_method
from ..exception import InvalidError, NotSupportedYet, SandboxTerminatedError, SandboxTimeoutError
from ..wire import settings
from ..wire.sandbox import take_frames
from .image import Image
from .runner import build_image
from .secret import Secret
from .tunnel import Tunnel
from .volume import check_mounts, resolve_mounts

POLL = 50.0


class SandboxImage:
    """A file system snapshot of a sandbox; pass it as Sandbox.create(image=...)."""

    def __init__(self, image_id: str) -> None:
        self.object_id = image_id

    def __repr__(self) -> str:
        return f"<firebox.SandboxImage {self.object_id}>"


class StreamReader:
    """A command's stdout or stderr: `read()`, or iterate for lines (sync or `async for`)."""

    def __init__(self, text: bool) -> None:
        self._text = text
        self._buf = bytearray()
        self._eof = False
        self._error: BaseException | None = None  # why the stream ended short of its end
        self._changed = asyncio.Event()

    def _feed(self, data: bytes) -> None:
        self._buf += data
        self._changed.set()

    def _close(self, error: BaseException | None = None) -> None:
        self._eof, self._error = True, error
        self._changed.set()

    def _out(self, data: bytes) -> Any:
        return data.decode("utf-8", "replace") if self._text else bytes(data)

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    @live_method
    async def read(self) -> Any:
        """Everything up to the end of the stream."""
        while not self._eof:
            await self._wait()
        if self._error is not None:
            raise self._error
        data = bytes(self._buf)
        self._buf.clear()
        return self._out(data)

    async def _lines(self) -> AsyncIterator[Any]:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl + 1])
                del self._buf[:nl + 1]
                yield self._out(line)
            elif self._eof:
                if self._buf:
                    rest = bytes(self._buf)
                    self._buf.clear()
                    yield self._out(rest)
                return
            else:
                await self._wait()

    def __iter__(self) -> Iterator[Any]:
        return _sync.iterate(self._lines())

    async def _chunks(self) -> AsyncIterator[bytes]:
        """What arrives, as it arrives (on firebox's loop): for the CLI's streaming."""
        while True:
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                yield data
            elif self._eof:
                return
            else:
                await self._wait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return _sync.iterate_async(self._lines())


class StreamWriter:
    """A command's stdin: `write()` then `drain()` to send; `write_eof()` closes it."""

    def __init__(self, process: ContainerProcess) -> None:
        self._process = process
        self._pending = bytearray()
        self._eof = False

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        if self._eof:
            raise ValueError("stdin was closed with write_eof().")
        self._pending += data.encode() if isinstance(data, str) else bytes(data)

    def write_eof(self) -> None:
        self._eof = True

    @live_method
    async def drain(self) -> None:
        """Send what was written (and the end of the stream after write_eof())."""
        data, self._pending = bytes(self._pending), bytearray()
        await client_mod.current().request("POST", f"{self._process._path}/stdin",
                                           packed={"data": data, "eof": self._eof})


class ContainerProcess:
    """A command running in a sandbox (or exec'd into a function's container)."""

    def __init__(self, path: str, text: bool) -> None:
        self._path = path  # the API's path of the command: /v1/sandboxes/ID/exec/EXEC_ID
        self.stdout = StreamReader(text)
        self.stderr = StreamReader(text)
        self.stdin = StreamWriter(self)
        self.returncode: int | None = None
        self._error: BaseException | None = None  # the server refused the output's stream
        self._ended = asyncio.Event()
        self._pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            c = client_mod.current()
            async with c.http.stream("GET", f"{self._path}/output", timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    client_mod._decode(response)
                buf = bytearray()
                async for chunk in response.aiter_bytes():
                    buf += chunk
                    for m in take_frames(buf):
                        if "exit" in m:
                            self.returncode = int(m["exit"])
                        else:
                            (self.stdout if m["fd"] == 1 else self.stderr)._feed(m["data"])
        except client_mod._transport_errors():
            pass  # the server went away mid-stream: the command counts as killed
        except Exception as error:  # read() and wait() raise it, rather than return nothing
            self._error = error
        finally:
            if self.returncode is None:  # the stream broke off: the sandbox is gone
                self.returncode = -9
            self.stdout._close(self._error)
            self.stderr._close(self._error)
            self._ended.set()

    @live_method
    async def wait(self) -> int:
        """Wait for the command to end; its exit code."""
        await self._ended.wait()
        if self._error is not None:
            raise self._error
        assert self.returncode is not None
        return self.returncode

    def poll(self) -> int | None:
        """The exit code, or None while the command runs."""
        return self.returncode


class FileSystem:
    """Files inside a sandbox, as the sandbox sees them (its own writable root)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def _op(self, op: str, path: str, data: bytes = b"", **options: Any) -> Any:
        return await client_mod.current().request(
            "POST", f"/v1/sandboxes/{self._sandbox.object_id}/fs",
            packed={"op": op, "path": str(path), "data": data, **options})

    @live_method
    async def read_bytes(self, path: str) -> bytes:
        return bytes((await self._op("read", path))["data"])

    @live_method
    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return bytes((await self._op("read", path))["data"]).decode(encoding)

    @live_method
    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._op("write", path, bytes(data))

    @live_method
    async def write_text(self, path: str, text: str, encoding: str = "utf-8") -> None:
        await self._op("write", path, text.encode(encoding))

    @live_method
    async def list_files(self, path: str) -> list[str]:
        """The names in directory path."""
        return list((await self._op("list", path))["result"])

    @live_method
    async def make_directory(self, path: str, *, parents: bool = False) -> None:
        await self._op("mkdir", path, parents=parents)

    @live_method
    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._op("remove", path, recursive=recursive)

    @live_method
    async def stat(self, path: str) -> dict[str, Any]:
        """{"size", "mode", "mtime", "type": "file" | "directory" | "symlink"}."""
        return dict((await self._op("stat", path))["result"])

    @live_method
    async def copy_from_local(self, local_path: str | Path, remote_path: str) -> None:
        data = await asyncio.to_thread(Path(local_path).read_bytes)
        await self._op("write", remote_path, data)

    @live_method
    async def copy_to_local(self, remote_path: str, local_path: str | Path) -> None:
        data = bytes((await self._op("read", remote_path))["data"])
        await asyncio.to_thread(Path(local_path).write_bytes, data)


async def _image_id(image: Any) -> str | None:
    """The server's id of a sandbox's image: a snapshot's, or an Image's, built first (its
    steps cached as for a function's) as Modal builds it at create."""
    if image is None:
        return None
    if isinstance(image, SandboxImage):
        return image.object_id
    if isinstance(image, Image):
        built = await build_image(image)
        return str(built["image_id"])
    raise InvalidError(f"Sandbox.create(image=) takes a firebox.Image or a snapshot's image "
                       f"(sb.snapshot_filesystem()), not {type(image).__name__}.")


async def _secret_ids(secrets: Sequence[Secret] | None) -> list[str]:
    ids = []
    for secret in secrets or ():
        if not isinstance(secret, Secret):
            raise InvalidError(
                f"secrets= takes firebox.Secret objects, not {type(secret).__name__}.")
        ids.append(await secret._resolve())
    return ids


class Sandbox:
    """A running (or ended) sandbox; see the module's docstring."""

    def __init__(self, sandbox_id: str, isolation: str = "") -> None:
        self.object_id = sandbox_id
        self.isolation = isolation  # "gvisor" or "namespaces"
        self.returncode: int | None = None
        self.filesystem = FileSystem(self)
        self._main: ContainerProcess | None = None
        self._status = "running"

    def __repr__(self) -> str:
        return f"<firebox.Sandbox {self.object_id} ({self.isolation})>"

    @live_classmethod
    async def create(cls, *args: str, app: Any = None, name: str | None = None,
                     image: Any = None, env: dict[str, str] | None = None,
                     secrets: Sequence[Secret] | None = None,
                     volumes: dict[str, Any] | None = None, timeout: float = 300,
                     idle_timeout: float | None = None, workdir: str | None = None,
                     gpu: Any = None, cpu: float | None = None, memory: int | None = None,
                     block_network: bool = False, cidr_allowlist: Sequence[str] | None = None,
                     encrypted_ports: Sequence[int] = (), unencrypted_ports: Sequence[int] = (),
                     h2_ports: Sequence[int] = (), pty: bool = False,
                     tags: dict[str, str] | None = None, **_: Any) -> Sandbox:
        """Start a sandbox; with a command it ends when the command does, without one it
        stays up for exec until timeout (or idle_timeout) or terminate()."""
        app_id = _app_id(app)
        mounts = check_mounts(volumes)
        if gpu:
            raise NotSupportedYet("GPUs in sandboxes are not supported yet in firebox.")
        if cidr_allowlist is not None and block_network:
            raise InvalidError("cidr_allowlist= opens ranges and block_network=True closes them "
                               "all; pass one of the two.")
        if isinstance(cidr_allowlist, str):
            raise InvalidError("cidr_allowlist= takes a list of CIDR ranges, not one string.")
        if h2_ports:
            raise NotSupportedYet("h2_ports= is not supported yet in firebox; encrypted_ports= "
                                  "serves HTTP/1.1 over TLS.")
        if block_network and (encrypted_ports or unencrypted_ports):
            raise InvalidError("Tunnels need the sandbox on a network of its own: drop "
                               "block_network=True (egress stays closed unless cidr_allowlist= "
                               "opens it).")
        image_id = await _image_id(image)
        body = {
            "app_id": app_id, "name": name, "args": [str(a) for a in args], "env": env or {},
            "secrets": await _secret_ids(secrets), "timeout": timeout,
            "idle_timeout": idle_timeout, "workdir": workdir, "cpu": cpu, "memory": memory,
            "image": image_id, "tags": tags or {},
            "volumes": await resolve_mounts(mounts), "block_network": block_network,
            "cidr_allowlist": list(cidr_allowlist) if cidr_allowlist is not None else None,
            "encrypted_ports": list(encrypted_ports), "unencrypted_ports": list(unencrypted_ports),
            "pty": pty,
        }
        resp = await client_mod.current().request("POST", "/v1/sandboxes", packed=body)
        sb = cls(resp["id"], resp["isolation"])
        if args:
            sb._main = ContainerProcess(f"/v1/sandboxes/{sb.object_id}/exec/main", True)
        return sb

    @live_classmethod
    async def from_id(cls, sandbox_id: str) -> Sandbox:
        info = await client_mod.current().request("GET", f"/v1/sandboxes/{sandbox_id}")
        return cls._of(info)

    @live_classmethod
    async def from_name(cls, app_name: str, name: str, *,
                        environment_name: str | None = None) -> Sandbox:
        info = await client_mod.current().request(
            "GET", "/v1/sandboxes/lookup", params={"app": app_name, "name": name},
            environment=environment_name)
        return cls._of(info)

    @live_classmethod
    async def list(cls, *, app_id: str | None = None, tags: dict[str, str] | None = None,
                   environment_name: str | None = None) -> list[Sandbox]:
        """The running sandboxes of this workspace, of one app, with all these tags."""
        params: list[tuple[str, str]] = [("tag", f"{k}={v}") for k, v in (tags or {}).items()]
        if app_id:
            params.append(("app_id", app_id))
        resp = await client_mod.current().request("GET", "/v1/sandboxes", params=params,
                                                  environment=environment_name)
        return [cls._of(info) for info in resp["sandboxes"]]

    @classmethod
    def _of(cls, info: dict[str, Any]) -> Sandbox:
        sb = cls(info["id"], info["isolation"])
        sb._update(info)
        return sb

    def _update(self, info: dict[str, Any]) -> None:
        self._status = info["status"]
        self.returncode = info["returncode"]

    @property
    def stdout(self) -> StreamReader:
        return self._main_process().stdout

    @property
    def stderr(self) -> StreamReader:
        return self._main_process().stderr

    @property
    def stdin(self) -> StreamWriter:
        return self._main_process().stdin

    def _main_process(self) -> ContainerProcess:
        if self._main is None:
            raise InvalidError("This sandbox was created without a command, so it has no "
                               "stdout/stdin of its own; use sb.exec(...).")
        return self._main

    @live_method
    async def exec(self, *args: str, timeout: float | None = None, workdir: str | None = None,
                   env: dict[str, str] | None = None, secrets: Sequence[Secret] | None = None,
                   text: bool = True, bufsize: int = -1, pty: bool = False,
                   **_: Any) -> ContainerProcess:
        """Start a command in the sandbox; returns at once with its process. pty=True runs it
        on a terminal: its stdout and stderr both arrive on stdout."""
        resp = await client_mod.current().request(
            "POST", f"/v1/sandboxes/{self.object_id}/exec",
            packed={"args": [str(a) for a in args], "timeout": timeout, "workdir": workdir,
                    "env": env or {}, "secrets": await _secret_ids(secrets), "pty": pty,
                    "pty_size": _.get("_pty_size")})
        return ContainerProcess(f"/v1/sandboxes/{self.object_id}/exec/{resp['exec_id']}", text)

    @live_method
    async def wait(self, raise_on_termination: bool = True) -> None:
        """Wait for the sandbox to end. SandboxTimeoutError or SandboxTerminatedError if it
        was stopped rather than its command ending, unless raise_on_termination=False."""
        while True:
            info = await client_mod.current().request(
                "POST", f"/v1/sandboxes/{self.object_id}/wait", packed={"timeout": POLL})
            self._update(info)
            if info["status"] != "running":
                break
        if raise_on_termination and self._status == "timeout":
            raise SandboxTimeoutError(f"Sandbox {self.object_id} ran past its timeout.")
        if raise_on_termination and self._status in ("terminated", "failed"):
            raise SandboxTerminatedError(f"Sandbox {self.object_id} was terminated.")

    @live_method
    async def poll(self) -> int | None:
        """The sandbox's exit code, or None while it runs."""
        self._update(await client_mod.current().request("GET", f"/v1/sandboxes/{self.object_id}"))
        return self.returncode

    @live_method
    async def terminate(self) -> None:
        """Stop the sandbox and everything in it."""
        self._update(await client_mod.current().request(
            "POST", f"/v1/sandboxes/{self.object_id}/terminate"))

    @live_method
    async def set_tags(self, tags: dict[str, str]) -> None:
        await client_mod.current().request("POST", f"/v1/sandboxes/{self.object_id}/tags",
                                           packed={"tags": tags})

    @live_method
    async def get_tags(self) -> dict[str, str]:
        info = await client_mod.current().request("GET", f"/v1/sandboxes/{self.object_id}")
        return dict(info["tags"])

    @live_method
    async def tunnels(self, timeout: int = 50) -> dict[int, Tunnel]:
        """How to reach the ports given as encrypted_ports= and unencrypted_ports=, by port."""
        resp = await client_mod.current().request("GET", f"/v1/sandboxes/{self.object_id}/tunnels")
        return {t["container_port"]: Tunnel._of(t) for t in resp["tunnels"]}

    @live_method
    async def snapshot_filesystem(self, timeout: int = 55) -> SandboxImage:
        """The sandbox's file system as it is now, to seed new sandboxes with."""
        resp = await client_mod.current().request(
            "POST", f"/v1/sandboxes/{self.object_id}/snapshot")
        return SandboxImage(resp["image_id"])


def _app_id(app: Any) -> str:
    if app is None:
        env_app = settings.APP_ID.get()
        if env_app:
            return env_app
        raise InvalidError("Sandbox.create needs app= outside a container: "
                           "app = firebox.App.lookup('name', create_if_missing=True).")
    app_id = getattr(app, "app_id", None)
    if not app_id:
        raise InvalidError("The app passed to Sandbox.create is not running; use "
                           "App.lookup('name', create_if_missing=True) or create it inside "
                           "`with app.run():`.")
    return str(app_id)


__all__ = ["ContainerProcess", "FileSystem", "Sandbox", "SandboxImage", "StreamReader",
           "StreamWriter"]
