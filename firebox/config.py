"""Where a client finds its control plane: ~/.firebox/config.toml, overridden by environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .exception import AuthError, InvalidError
from .wire import settings

DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"


def config_dir() -> Path:
    return settings.CONFIG_DIR.get() or Path.home() / ".firebox"


def config_file() -> Path:
    return config_dir() / "config.toml"


def state_dir() -> Path:
    """Where a lasting server keeps its database, blobs and keys by default."""
    return settings.STATE_DIR.get() or config_dir() / "server"


@dataclass(frozen=True)
class ClientConfig:
    server_url: str
    token: str
    source: str = ""  # where server_url was set: a variable's name or the file's path


def read_file() -> dict[str, str]:
    path = config_file()
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            return {k: str(v) for k, v in tomllib.load(f).items()}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError(
            f"{path} is not valid TOML ({exc}); fix it, or move it away and set "
            f"{settings.SERVER_URL.name} and {settings.TOKEN.name}."
        ) from None


def write_file(server_url: str, token: str) -> Path:
    """Write the client config, readable by its owner only."""
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump({"server_url": server_url, "token": token}, f)
    os.replace(tmp, path)
    return path


def load() -> ClientConfig | None:
    """The configured server, or None when none is configured (then an embedded one is used)."""
    stored = read_file()
    url, source = settings.SERVER_URL.get(), settings.SERVER_URL.name
    if not url:
        url, source = stored.get("server_url"), str(config_file())
    token = settings.TOKEN.get() or stored.get("token")
    if not url:
        return None
    if not token:
        raise AuthError(
            f"No token for the server at {url} (set in {source}): save one with `firebox token "
            f"set --server {url} --token TOKEN`, or set {settings.TOKEN.name}."
        )
    return ClientConfig(server_url=url.rstrip("/"), token=token, source=source)


def embedded_hint() -> str:
    """How to have `firebox run` (and `app.run()`) start an embedded server instead of the
    configured one: the embedded one is used only where no server is configured."""
    undo = []
    if settings.SERVER_URL.get():
        undo.append(f"unset {settings.SERVER_URL.name}")
    if read_file().get("server_url"):
        undo.append(f"move {config_file()} away")
    return "To run with an embedded server instead, " + " and ".join(undo) + "."
