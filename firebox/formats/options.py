"""What a deploy of a foreign package takes besides the package: scaling, resources and build
choices, from the command line or a `firebox.toml` in the package (the command line wins)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..exception import InvalidError
from ..sdk.image import Image
from ..sdk.secret import Secret

CONFIG_FILE = "firebox.toml"


@dataclass
class Options:
    min_containers: int | None = None
    max_containers: int | None = None
    concurrency: int | None = None  # inputs one container runs at once
    gpu: str | None = None
    cpu: float | None = None
    memory: int | None = None  # MiB
    timeout: int | None = None  # seconds one input may run
    handler: str | None = None  # the handler file, relative to the package
    dockerfile: str | None = None  # build the image from this Dockerfile of the package
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # firebox Secrets the containers get

    def merged_with_file(self, path: Path) -> Options:
        """These options over those of the package's firebox.toml, if it has one."""
        config = path / CONFIG_FILE
        if not config.is_file():
            return self
        try:
            data = tomllib.loads(config.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidError(f"{config} is not valid TOML ({exc}).") from None
        known = {f.name for f in fields(self)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidError(f"{config} has unknown keys {', '.join(unknown)}; it may set "
                               f"{', '.join(sorted(known))}.")
        values: dict[str, Any] = {**data}
        for f in fields(self):
            mine = getattr(self, f.name)
            if mine not in (None, {}, []):
                values[f.name] = mine
        return Options(**values)

    def handler_path(self, path: Path) -> Path | None:
        if self.handler is None:
            return None
        handler = (path / self.handler).resolve()
        if not handler.is_file() or not handler.is_relative_to(path.resolve()):
            raise InvalidError(f"No handler file {self.handler} in {path}.")
        return handler

    def image(self, path: Path, default: Image) -> Image:
        if self.dockerfile is None:
            return default
        dockerfile = path / self.dockerfile
        if not dockerfile.is_file():
            raise InvalidError(f"No Dockerfile {self.dockerfile} in {path}.")
        return Image.from_dockerfile(dockerfile, context_dir=path)

    def secret_objects(self) -> list[Secret]:
        return [Secret.from_name(name) for name in self.secrets]

    def function_options(self, default_timeout: int) -> dict[str, Any]:
        """The @app.cls options these stand for."""
        chosen: dict[str, Any] = {
            "min_containers": self.min_containers, "max_containers": self.max_containers,
            "max_inputs": self.concurrency, "gpu": self.gpu, "cpu": self.cpu,
            "memory": self.memory, "timeout": self.timeout or default_timeout,
        }
        return {k: v for k, v in chosen.items() if v is not None}


def read_yaml(file: Path, what: str, known: set[str]) -> dict[str, Any]:
    """A package's YAML config (cog.yaml, a Truss's config.yaml): a mapping whose top-level
    keys are all known, or an error that says what is wrong with it."""
    try:
        config = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidError(f"{file} is not valid YAML ({exc}).") from None
    if not isinstance(config, dict):
        raise InvalidError(f"{file} must be a mapping of keys ({what}).")
    unknown = sorted(set(config) - known)
    if unknown:
        raise InvalidError(f"{file}: firebox does not know the key(s) {', '.join(unknown)}.")
    return config
