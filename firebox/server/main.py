"""Starting a control plane process: its sockets, its state directory's lock, its first token,
and uvicorn serving the API (`firebox server`; firebox/local.py runs one in a thread)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
from pathlib import Path

import uvicorn

from .. import config
from ..backends.isolation import IsolationUnavailable, sandbox_default_mode
from ..store.db import Database
from ..wire import settings as variables
from .api.app import create_app
from .api.limits import max_message_bytes
from .core.plane import BACKENDS, Settings
from .core.tunnels import served_ca
from .core.workspaces import ADMIN, Identity, create_token, ensure_workspace, token_identity

log = logging.getLogger("firebox.server")
# WebSocket messages uvicorn reads ahead of the app, per socket: each may be as large as a
# payload, and the app holds a sender back by not reading, which only works with few queued.
WS_QUEUE = 2
# Seconds an idle keep-alive connection stays open: longer than clients keep theirs (httpx and
# requests pools: 5 s), so that a client never sends on a connection the server is closing at
# that moment (uvicorn's default is 5 s too, and the two raced: a reset now and then).
KEEP_ALIVE = 75


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """How uvicorn serves the API and the endpoints' hosts, here and in the embedded server."""
    return uvicorn.Config(create_app(settings), log_level="warning", lifespan="on",
                          timeout_graceful_shutdown=5, ws_max_size=max_message_bytes(),
                          ws_max_queue=WS_QUEUE, timeout_keep_alive=KEEP_ALIVE,
                          # X-Forwarded-Proto/-For are believed only from these addresses
                          forwarded_allow_ips=variables.TRUSTED_PROXIES.get())

DEFAULT_WORKSPACE = "main"
LOCK_FILE = "server.lock"  # in the state directory: held by its server, names it


async def bootstrap(settings: Settings, keep_token: str | None = None,
                    workspace: str = DEFAULT_WORKSPACE, kind: str = ADMIN) -> str:
    """Migrate the database, make sure the workspace exists, and return a valid token of that
    kind for it: keep_token if it still is one, else a new one. The server's own token, written
    to the config on its machine, is the operator's (admin); tokens for tenants are users'."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        await db.migrate()
        db.start()
        ws = await ensure_workspace(db, workspace)
        kept = await token_identity(db, keep_token) if keep_token else None
        if keep_token and kept == Identity(ws, kind):
            return keep_token
        return await create_token(db, ws, kind)
    finally:
        await db.close()


# Sockets listen from the moment they are bound: the control plane starts containers while it
# starts up (work recovered after a restart), before uvicorn accepts, and a container that
# connects then must wait in the backlog, not be refused.
BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it every small response waits out the peer's delayed ACK (~40 ms).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """The unix socket containers reach the control plane by: the only way to it from their
    network namespaces. A path too long for bind(2) (108 bytes) is bound through a descriptor
    of its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if len(str(path)) > 100:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.bind(f"/proc/self/fd/{fd}/{path.name}")
        finally:
            os.close(fd)
    else:
        sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def lock_state_dir(state_dir: Path) -> int:
    """Hold the state directory for the life of this process and return the lock's descriptor:
    a second server on it would rewrite the client config and unlink the first one's socket.
    The kernel lets go of the lock when the process ends, however it ends."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
        os.close(fd)
        pid, url = (holder + ["unknown", "its URL not yet known"])[:2]
        raise SystemExit(
            f"firebox server: another server (pid {pid}, {url}) is already running on the state "
            f"directory {state_dir}; stop it, or give this one its own --state-dir."
        ) from None
    name_holder(fd, "starting")
    return fd


def name_holder(fd: int, url: str) -> None:
    """Write who holds the state directory into its lock file, for a second server's error."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {url}\n".encode(), 0)


def serve_forever(host: str, port: int, state_dir: Path, database_url: str | None,
                  isolation: str | None = None, backend: str = "local") -> None:
    """Run a lasting server in this process; writes the client config on first start."""
    if backend not in BACKENDS:
        raise SystemExit(f"firebox: there is no backend named {backend!r}; choose one of "
                         f"{', '.join(map(repr, BACKENDS))}.")
    if variables.SANDBOX_ISOLATION.get():
        try:  # the operator's choice must work: refuse to start rather than fail each sandbox
            sandbox_default_mode()
        except IsolationUnavailable as exc:
            raise SystemExit(f"firebox: {exc}") from None
    # Before anything is touched: the socket, the client config and the database are the
    # running server's, if there is one.
    lock = lock_state_dir(state_dir)
    sock = bind(host, port)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{url_host}:{sock.getsockname()[1]}"
    name_holder(lock, url)
    settings = Settings.for_state_dir(state_dir, url, database_url)
    settings.isolation = isolation
    settings.backend = backend
    settings.bind_host = host or "0.0.0.0"
    unix = bind_unix(state_dir / "server.sock")
    settings.socket = state_dir / "server.sock"
    stored = config.profiles().get(config.DEFAULT_PROFILE, {})
    keep = stored.get("token") if stored.get("server_url") == url else None
    token = asyncio.run(bootstrap(settings, keep))
    if token != keep:
        path = config.write_profile(config.DEFAULT_PROFILE, url, token, activate=None)
        print(f"firebox: wrote the client config for {url} to {path} (profile "
              f"'{config.DEFAULT_PROFILE}')", flush=True)
    if ca := served_ca(settings.tunnels_tls):  # what the profile's clients trust for tunnels
        config.save_ca(config.DEFAULT_PROFILE, ca)
    print(f"firebox: server listening on {url} (state in {state_dir})", flush=True)
    server = uvicorn.Server(uvicorn_config(settings))
    try:
        server.run(sockets=[sock, unix])
    finally:
        os.close(lock)
