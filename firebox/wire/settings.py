"""Every FIREBOX_* environment variable: its name, type, default and meaning, and its one reader.

A setting is read from the environment each time its `get()` is called, so a variable set at
run time (as the tests do) counts from the next read: where a value is fixed for a process, the
caller reads it once (at import or start) and keeps it. Unset and empty are the same, except for
FAKE_GPUS. The variables firebox sets in a container's environment are named here too, with
the MODAL_* ones it sets for code written for Modal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

PREFIX = "FIREBOX_"  # a container gets none of the server's own variables with it
MB = 1024 * 1024


class Setting(Generic[T]):
    """One environment variable: `get()` is its value now, parsed, or the default."""

    __slots__ = ("name", "default", "parse", "meaning", "keep_empty", "_last")

    def __init__(self, name: str, default: T, parse: Callable[[str], T], meaning: str, *,
                 keep_empty: bool = False) -> None:
        self.name, self.default, self.parse, self.meaning = name, default, parse, meaning
        self.keep_empty = keep_empty  # an empty value is a value, not "unset"
        self._last: tuple[str | None, T] = (None, default)  # parsed once per raw value

    def get(self) -> T:
        raw = os.environ.get(self.name)
        if raw == "" and not self.keep_empty:
            raw = None
        last = self._last
        if raw == last[0]:
            return last[1]
        value = self.default if raw is None else self.parse(raw)
        self._last = (raw, value)
        return value

    def required(self) -> T:
        """The value where firebox always sets it (a container's own variables)."""
        if os.environ.get(self.name) is None:
            raise KeyError(self.name)
        return self.get()


def _megabytes(raw: str) -> int:
    return int(float(raw) * MB)


def _is_one(raw: str) -> bool:
    return raw == "1"


def _text(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    return Path(raw)


# ---- where a client finds its control plane ---------------------------------------------------

CONFIG_DIR: Setting[Path | None] = Setting(
    "FIREBOX_CONFIG_DIR", None, _path, "the client's directory (default ~/.firebox)")
STATE_DIR: Setting[Path | None] = Setting(
    "FIREBOX_STATE_DIR", None, _path, "the server's state (default <config dir>/server)")
SERVER_URL: Setting[str | None] = Setting(
    "FIREBOX_SERVER_URL", None, _text,
    "the control plane's URL (over config.toml); set for a container, its server's")
TOKEN: Setting[str | None] = Setting(
    "FIREBOX_TOKEN", None, _text,
    "the API token (over config.toml); set for a container, its container token")
PROFILE: Setting[str | None] = Setting(
    "FIREBOX_PROFILE", None, _text, "the config.toml profile to use (over its active one)")
ENVIRONMENT: Setting[str | None] = Setting(
    "FIREBOX_ENVIRONMENT", None, _text,
    "the environment of the workspace to use (over the profile's; default \"main\")")
RECONNECT_TIMEOUT: Setting[float] = Setting(
    "FIREBOX_RECONNECT_TIMEOUT", 120.0, float,
    "seconds a client keeps trying to reach a server that went away")
DATABASE_URL: Setting[str | None] = Setting(
    "FIREBOX_DATABASE_URL", None, _text, "`firebox server --database-url` (Postgres)")
BACKEND: Setting[str | None] = Setting(
    "FIREBOX_BACKEND", None, _text, "`firebox server --backend`: what launches containers (local)")

# ---- the server: isolation and this machine ---------------------------------------------------

ISOLATION: Setting[str | None] = Setting(
    "FIREBOX_ISOLATION", None, _text,
    "functions' default isolation (process, namespaces, gvisor); set for a container, its own")
SANDBOX_ISOLATION: Setting[str | None] = Setting(
    "FIREBOX_SANDBOX_ISOLATION", None, _text,
    "sandboxes' isolation (gvisor, namespaces); the server refuses to start if it cannot")
CPU: Setting[float | None] = Setting(
    "FIREBOX_CPU", None, float, "cores containers may reserve (default: this machine's)")
MEMORY_MB: Setting[int | None] = Setting(
    "FIREBOX_MEMORY_MB", None, int, "MiB containers may reserve (default: this machine's)")
FAKE_GPUS: Setting[str | None] = Setting(
    "FIREBOX_FAKE_GPUS", None, _text,
    "GPUs that exist only on paper, e.g. \"H100:2,A100-80GB:1\" (empty: none)", keep_empty=True)
CGROUP_ROOT: Setting[Path] = Setting(
    "FIREBOX_CGROUP_ROOT", Path("/sys/fs/cgroup"), _path, "where cgroups are mounted")
CONTAINER_EGRESS: Setting[bool] = Setting(
    "FIREBOX_CONTAINER_EGRESS", True, lambda raw: raw != "0",
    "\"0\": containers and image builds get loopback only, no way out")
STANDBY_RUNTIMES: Setting[int] = Setting(
    "FIREBOX_STANDBY", 2, int, "standby runtimes kept launched; 0 turns them off")
TEMPLATE_IDLE: Setting[float] = Setting(
    "FIREBOX_TEMPLATE_IDLE", 300.0, float,
    "seconds a memory snapshot's template is kept with no container started from it")
SANDBOX_POOL: Setting[int] = Setting(
    "FIREBOX_SANDBOX_POOL", 2, int, "default sandboxes kept booted; 0 turns the pool off")
PRICES: Setting[Path | None] = Setting(
    "FIREBOX_PRICES", None, _path, "the price list (default <state dir>/prices.toml)")

# ---- the server: bounds -----------------------------------------------------------------------

MAX_PAYLOAD: Setting[int] = Setting(
    "FIREBOX_MAX_PAYLOAD_MB", 64 * MB, _megabytes,
    "the largest argument or result, serialized (read in MiB, kept in bytes)")
MAX_JSON: Setting[int] = Setting(
    "FIREBOX_MAX_JSON_MB", 16 * MB, _megabytes,
    "the largest JSON (non-payload) request body: specs, digests and names")
MAX_BLOB: Setting[int] = Setting(
    "FIREBOX_MAX_BLOB_MB", 8192 * MB, _megabytes,
    "the largest blob upload (it streams to disk, so this bounds the disk)")
MAX_BODIES: Setting[int] = Setting(
    "FIREBOX_MAX_BODIES_MB", 256 * MB, _megabytes,
    "request bodies read or parsed at once, all requests together")
MAX_QUEUED: Setting[int] = Setting(
    "FIREBOX_MAX_QUEUED_MB", 64 * MB, _megabytes,
    "queued inputs' arguments held in memory, all pools together")
MODEL_START_WAIT: Setting[float] = Setting(
    "FIREBOX_MODEL_START_WAIT_S", 600.0, float,
    "how long a model gateway request waits for a replica to start before a 503")
WEB_MAX_BODY: Setting[int] = Setting(
    "FIREBOX_WEB_MAX_BODY_MB", 32 * MB, _megabytes, "the largest web request body")
WEB_MAX_MESSAGE: Setting[int] = Setting(
    "FIREBOX_WEB_MAX_MESSAGE_MB", 16 * MB, _megabytes, "the largest WebSocket message passed on")
WEB_DOMAIN: Setting[str] = Setting(
    "FIREBOX_WEB_DOMAIN", "localhost", _text,
    "the wildcard domain web endpoints get their hosts under, at the server's scheme and port; "
    "or a URL (https://apps.example.com) where they are served at another")
TRUSTED_PROXIES: Setting[str] = Setting(
    "FIREBOX_TRUSTED_PROXIES", "127.0.0.1", _text,
    "addresses (comma-separated, CIDR ranges too, or *) of the TLS-terminating proxies whose "
    "X-Forwarded-Proto and X-Forwarded-For web endpoints are given")
IMAGE_BUILD_MEMORY_MB: Setting[int] = Setting(
    "FIREBOX_IMAGE_BUILD_MEMORY_MB", 4096, int, "MiB an image build step may use")
IMAGE_STEP_TIMEOUT: Setting[float] = Setting(
    "FIREBOX_IMAGE_STEP_TIMEOUT", 3600.0, float, "seconds an image build step may run")
INSECURE_REGISTRIES: Setting[frozenset[str]] = Setting(
    "FIREBOX_INSECURE_REGISTRIES", frozenset(),
    lambda raw: frozenset(h.strip() for h in raw.split(",") if h.strip()),
    "registries (host:port, comma-separated) pulled from over plain HTTP; loopback ones always")

# ---- the server: tunnels ----------------------------------------------------------------------

TUNNEL_HOST: Setting[str | None] = Setting(
    "FIREBOX_TUNNEL_HOST", None, _text, "the host name tunnels' URLs carry")
TLS_CERT: Setting[str | None] = Setting(
    "FIREBOX_TLS_CERT", None, _text, "tunnels' certificate chain, PEM (with TLS_KEY)")
TLS_KEY: Setting[str | None] = Setting(
    "FIREBOX_TLS_KEY", None, _text, "tunnels' private key, PEM (with TLS_CERT)")

# ---- set by firebox in a container's environment ----------------------------------------------
# (SERVER_URL, TOKEN and ISOLATION above too.)

CONTAINER_ID: Setting[str | None] = Setting(
    "FIREBOX_CONTAINER_ID", None, _text, "the container's id")
APP_ID: Setting[str | None] = Setting(
    "FIREBOX_APP_ID", None, _text, "the id of the app the container's function is in")
IS_REMOTE: Setting[bool] = Setting(
    "FIREBOX_IS_REMOTE", False, _is_one, "\"1\": this process runs in a container")
SERVER_SOCKET: Setting[str | None] = Setting(
    "FIREBOX_SERVER_SOCKET", None, _text,
    "the control plane's unix socket, which works with no network of the container's own")
CONTAINER_ROOT: Setting[Path] = Setting(
    "FIREBOX_CONTAINER_ROOT", Path("."), _path, "the container's own directory")
PARENT_PID: Setting[int | None] = Setting(
    "FIREBOX_PARENT_PID", None, int, "the server's pid: a runtime whose parent is not it exits")
STANDBY: Setting[bool] = Setting(
    "FIREBOX_STANDBY", False, bool,
    "set in a standby runtime's environment: it waits for the container it will be (the same "
    "name as STANDBY_RUNTIMES, which a container never sees: it gets none of the server's)")
TEMPLATE_FD: Setting[int | None] = Setting(
    "FIREBOX_TEMPLATE_FD", None, int,
    "set in a memory snapshot's template: the socket on which it is asked to fork containers")
CHECKPOINT: Setting[str | None] = Setting(
    "FIREBOX_CHECKPOINT", None, _text,
    "set in a gVisor container whose memory snapshot is stored: the word it prints when it is "
    "ready to be checkpointed (backends/stored.py)")
SNAPSHOT_KEY: Setting[str | None] = Setting(
    "FIREBOX_SNAPSHOT_KEY", None, _text,
    "set for a function with enable_memory_snapshot=True: its function, code, image and "
    "parameters, hashed; containers with the same key start from one template")
RUNPOD_HANDLER: Setting[str | None] = Setting(
    "FIREBOX_RUNPOD_HANDLER", None, _text,
    "set for a deployed RunPod worker package: its handler file, which the container runs as "
    "the worker (formats/runpod_worker.py)")
COG_PREDICT: Setting[str | None] = Setting(
    "FIREBOX_COG_PREDICT", None, _text,
    "set for a deployed Cog package: its cog.yaml `predict` (file.py:Name), which the "
    "container serves with Cog's own server (formats/cog_server.py)")
COG_CONCURRENCY: Setting[str | None] = Setting(
    "FIREBOX_COG_CONCURRENCY", None, _text,
    "a deployed Cog package's concurrency.max: the predictions its container runs at once")
TRUSS_CONCURRENCY: Setting[str | None] = Setting(
    "FIREBOX_TRUSS_CONCURRENCY", None, _text,
    "a deployed Truss's runtime.predict_concurrency: the predictions its container runs at once")
COG_TRAIN: Setting[str | None] = Setting(
    "FIREBOX_COG_TRAIN", None, _text, "a deployed Cog package's cog.yaml `train`, if it has one")
VOLUMES: Setting[str] = Setting(
    "FIREBOX_VOLUMES", "", _text, "the function's volumes, JSON: mount path -> volume id")
VOLUMES_AT_PATH: Setting[bool] = Setting(
    "FIREBOX_VOLUMES_AT_PATH", False, _is_one,
    "\"1\": volumes are mounted at their own paths (under isolation), not in the container dir")
VOLUME_PATHS: Setting[str] = Setting(
    "FIREBOX_VOLUME_PATHS", "", _text,
    "set by the runtime for user code, JSON: mount path -> where the volume's files are")
IMAGE_LAYERS: Setting[str] = Setting(
    "FIREBOX_IMAGE_LAYERS", "", _text, "the image's layer directories, JSON, oldest first")
IMAGE_WORKDIR: Setting[str | None] = Setting(
    "FIREBOX_IMAGE_WORKDIR", None, _text, "the image's working directory")
IMAGE_CONFIG: Setting[str] = Setting(
    "FIREBOX_IMAGE_CONFIG", "", _text,
    "a registry image's root, user and entrypoint, JSON (images/builder.py Built.config)")

# Modal's names for the same, which code written for Modal reads.
MODAL_IS_REMOTE: Setting[bool] = Setting(
    "MODAL_IS_REMOTE", False, _is_one, "\"1\": this process runs in a container (IS_REMOTE)")
MODAL_TASK_ID: Setting[str | None] = Setting(
    "MODAL_TASK_ID", None, _text, "the container's id (CONTAINER_ID)")
MODAL_ENVIRONMENT: Setting[str | None] = Setting(
    "MODAL_ENVIRONMENT", None, _text, "the environment of the container's app")
