"""Secret: environment variables for a function's containers, stored encrypted on the server."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import client as client_mod
from ..exception import InvalidError
from .managers import SecretManager


class Secret:
    """`Secret.from_name("db")`, `Secret.from_dict({...})`; pass them as secrets=[...]."""

    objects = SecretManager()  # Modal's `Secret.objects.create / list / delete`

    def __init__(self, *, name: str | None = None, env: dict[str, str] | None = None,
                 required_keys: Iterable[str] = (), environment_name: str | None = None) -> None:
        self._name = name
        self._environment = environment_name or None  # None: the client's
        self._env = env
        self._required_keys = list(required_keys)
        self._ids: dict[str, str] = {}  # server url -> the secret's id there

    def __repr__(self) -> str:
        return f"<firebox.Secret {self._name or '(from values)'}>"

    @property
    def name(self) -> str | None:
        return self._name

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None,
                  required_keys: Iterable[str] = ()) -> Secret:
        """The secret stored under name (`firebox secret create`) in environment_name (by
        default the client's), checked when first used."""
        return cls(name=name, required_keys=required_keys, environment_name=environment_name)

    @classmethod
    def from_dict(cls, env_dict: dict[str, str | None] | None = None) -> Secret:
        """A secret of these values; keys whose value is None are left out."""
        env: dict[str, str] = {}
        for k, v in (env_dict or {}).items():
            if v is None:
                continue
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidError("Secret.from_dict takes a dict of str keys and str values.")
            env[k] = v
        return cls(env=env)

    @classmethod
    def from_local_environ(cls, env_keys: list[str]) -> Secret:
        """A secret of these variables of the local environment, read now."""
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(
                f"Secret.from_local_environ: {', '.join(missing)} not set in the local "
                "environment; set them or leave them out."
            )
        return cls(env={k: os.environ[k] for k in env_keys})

    @classmethod
    def from_dotenv(cls, path: str | Path | None = None, *, filename: str = ".env") -> Secret:
        """A secret of the variables in a .env file: path (a file, or a directory holding
        filename), or filename in the current directory or the nearest parent that has it."""
        file = _find_dotenv(path, filename)
        return cls(env=parse_dotenv(file.read_text()))

    async def _resolve(self) -> str:
        c = client_mod.current()
        found = self._ids.get(c.server_url)
        if found is not None:
            return found
        if self._name is not None:
            params = [("required_key", k) for k in self._required_keys]
            resp = await c.request("GET", f"/v1/secrets/{self._name}", params=params,
                                   environment=self._environment)
        else:
            resp = await c.request("POST", "/v1/secrets", body={"env": self._env or {}})
        self._ids[c.server_url] = resp["id"]
        return str(resp["id"])


def _find_dotenv(path: str | Path | None, filename: str) -> Path:
    if path is not None:
        p = Path(path).expanduser()
        p = p / filename if p.is_dir() else p
        if not p.is_file():
            raise InvalidError(f"Secret.from_dotenv: no file at {p}.")
        return p
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / filename).is_file():
            return d / filename
    raise InvalidError(
        f"Secret.from_dotenv: no {filename} in {Path.cwd()} or its parents; pass its path."
    )


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, comments and `export ` are allowed; values may be quoted."""
    env: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InvalidError(f".env line {lineno} is not KEY=VALUE: {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        env[key] = value
    return env


async def resolve_all(secrets: list[Any]) -> list[str]:
    ids = []
    for secret in secrets:
        if not isinstance(secret, Secret):
            raise InvalidError(
                f"secrets= takes firebox.Secret objects, not {type(secret).__name__}."
            )
        ids.append(await secret._resolve())
    return ids


__all__ = ["Secret"]
