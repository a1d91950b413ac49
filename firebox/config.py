"""Where a client finds its control plane: ~/.firebox/config.toml, overridden by environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


DEFAULT_PROFILE = "default"  # an old flat config.toml's one profile, and the first one written


def ca_file(profile: str) -> Path:
    """Where the certificate a profile's server serves tunnels (and HTTPS) under is kept:
    ~/.firebox/tls/<profile>.pem, saved by `firebox token set` and by the server for its
    own profile. Clients trust it with verify= or SSL_CERT_FILE (docs/sandboxes.md)."""
    return config_dir() / "tls" / f"{profile}.pem"


def embedded_tls_dir() -> Path:
    """Where embedded servers keep their certificate authority (ca.pem), the same for every
    `firebox run`."""
    return config_dir() / "tls" / "embedded"


def save_ca(profile: str, pem: bytes) -> Path:
    path = ca_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class ClientConfig:
    server_url: str
    token: str
    source: str = ""  # where server_url was set: a variable's name or the file's path
    environment: str | None = None  # None: the workspace's "main"
    profile: str = ""
    ca_file: str | None = None  # the profile's server's certificate, trusted over HTTPS


def _read_toml() -> dict[str, Any]:
    path = config_file()
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError(
            f"{path} is not valid TOML ({exc}); fix it, or move it away and set "
            f"{settings.SERVER_URL.name} and {settings.TOKEN.name}."
        ) from None


def profiles() -> dict[str, dict[str, Any]]:
    """config.toml's profiles by name, as Modal lays it out: a table per profile (server_url,
    token, environment, `active = true` on one). An old flat file's keys are the profile
    "default"."""
    data = _read_toml()
    tables = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if flat and DEFAULT_PROFILE not in tables:
        tables = {DEFAULT_PROFILE: flat, **tables}
    return tables


def unknown_profile(name: str, known: dict[str, Any]) -> InvalidError:
    names = ", ".join(sorted(known)) or "none yet; save one with `firebox token set`"
    return InvalidError(f"No profile '{name}' in {config_file()} (the profiles: {names}).")


def active_name(known: dict[str, dict[str, Any]], *, chosen: bool = True) -> str | None:
    """The profile in use: FIREBOX_PROFILE's (unless not chosen), else the one marked active,
    else "default" or the first; None where there are none."""
    name = settings.PROFILE.get() if chosen else None
    if name:
        if name not in known:
            raise unknown_profile(name, known)
        return name
    marked = [profile for profile, values in known.items() if values.get("active") is True]
    if marked:
        return marked[0]
    if not known:
        return None
    return DEFAULT_PROFILE if DEFAULT_PROFILE in known else next(iter(known))


def active_profile() -> tuple[str | None, dict[str, str]]:
    """The profile in use and its values (None and {} where there is none)."""
    known = profiles()
    name = active_name(known)
    if name is None:
        return None, {}
    return name, {k: str(v) for k, v in known[name].items() if k != "active"}


def _write(tables: dict[str, dict[str, Any]]) -> Path:
    """Write the client config, readable by its owner only."""
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(tables, f)
    os.replace(tmp, path)
    return path


def _mark_active(tables: dict[str, dict[str, Any]], name: str) -> None:
    for values in tables.values():
        values.pop("active", None)
    tables[name]["active"] = True


def write_profile(name: str, server_url: str, token: str, activate: bool | None = True) -> Path:
    """Save a server and its token as profile name (keeping its environment), active if asked;
    activate=None activates it only where no profile is in use yet."""
    tables = profiles()
    in_use = active_name(tables, chosen=False)  # the file's own, which FIREBOX_PROFILE leaves be
    entry = tables.setdefault(name, {})
    entry.update(server_url=server_url, token=token)
    if activate or (activate is None and in_use in (None, name)):
        _mark_active(tables, name)
    return _write(tables)


def activate(name: str) -> Path:
    tables = profiles()
    if name not in tables:
        raise unknown_profile(name, tables)
    _mark_active(tables, name)
    return _write(tables)


def load() -> ClientConfig | None:
    """The configured server, or None when none is configured (then an embedded one is used)."""
    profile, stored = active_profile()
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
    environment = requested_environment() or stored.get("environment")
    ca = ca_file(profile) if profile else None
    return ClientConfig(server_url=url.rstrip("/"), token=token, source=source,
                        environment=environment or None,
                        profile=profile or "", ca_file=str(ca) if ca and ca.exists() else None)


# The environment `-e/--env` chose for this command (over FIREBOX_ENVIRONMENT and the profile's).
chosen_environment: str | None = None


def requested_environment() -> str | None:
    """The environment -e or FIREBOX_ENVIRONMENT asks for (a profile's aside)."""
    return chosen_environment or settings.ENVIRONMENT.get()


def choose_environment(name: str | None) -> str | None:
    """Use environment name (None: the variable's or profile's) from now on; the one chosen
    before, to restore."""
    global chosen_environment
    previous, chosen_environment = chosen_environment, name
    return previous


def embedded_hint() -> str:
    """How to have `firebox run` (and `app.run()`) start an embedded server instead of the
    configured one: the embedded one is used only where no server is configured."""
    undo = []
    if settings.SERVER_URL.get():
        undo.append(f"unset {settings.SERVER_URL.name}")
    if active_profile()[1].get("server_url"):
        undo.append(f"move {config_file()} away")
    return "To run with an embedded server instead, " + " and ".join(undo) + "."
