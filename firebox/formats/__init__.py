"""Foreign model packages deployed unchanged: each format turns a package directory into an
ordinary firebox App, using the SDK only. The HTTP APIs their clients call are the control
plane's gateways (server/gateways/)."""

from __future__ import annotations

from pathlib import Path

from ..exception import InvalidError
from ..sdk.app import App
from . import cog, runpod, truss
from .options import Options

FORMATS = ("runpod", "cog", "truss")
BUILDERS = {"runpod": runpod.build_app, "cog": cog.build_app, "truss": truss.build_app}


def detect(path: Path) -> str:
    """The format of the package at path, by the files it has."""
    if (path / "cog.yaml").is_file():
        return "cog"
    if (path / "config.yaml").is_file() and (path / "model").is_dir():
        return "truss"
    if runpod.is_package(path):
        return "runpod"
    raise InvalidError(
        f"{path} is not a package firebox knows: a Cog package has cog.yaml, a Truss has "
        "config.yaml and model/, a RunPod worker has a handler file that calls "
        "runpod.serverless.start(...). Name the format with --format.")


def load(path: Path, name: str | None, format: str | None, options: Options) -> App:
    """The App of the package at path, named name (by default the directory's name)."""
    if not path.is_dir():
        raise InvalidError(f"{path} is not a directory.")
    kind = format or detect(path)
    if kind not in BUILDERS:
        raise InvalidError(f"Unknown format '{kind}'; firebox deploys {', '.join(FORMATS)}.")
    options = options.merged_with_file(path)
    return BUILDERS[kind](path, name or path.resolve().name, options)
