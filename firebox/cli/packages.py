"""`firebox deploy DIR`: the options of a foreign package's deploy, and its App."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import formats
from ..sdk.app import App


def package_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `firebox deploy DIR` (they may also come from the package's
    firebox.toml; these win)."""
    options = [
        click.option("--format", "format", type=click.Choice(formats.FORMATS),
                     help="The package's format, when its files do not say."),
        click.option("--handler", help="A RunPod worker's handler file, relative to DIR."),
        click.option("--dockerfile", help="Build the image from this Dockerfile of DIR "
                     "instead of its requirements.txt."),
        click.option("--min-containers", type=int, help="Containers kept running when idle."),
        click.option("--max-containers", type=int, help="The most containers at once."),
        click.option("--concurrency", type=int, help="Inputs one container runs at once."),
        click.option("--gpu", help="GPUs per container, like 'H100' or 'A100:2'."),
        click.option("--cpu", type=float, help="Cores reserved per container."),
        click.option("--memory", type=int, help="MiB reserved per container."),
        click.option("--timeout", type=int, help="Seconds one input may run."),
        click.option("--secret", "secrets", multiple=True,
                     help="A firebox Secret whose variables the containers get (repeatable)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def package_app(path: Path, name: str | None, chosen: dict[str, Any]) -> App:
    """The App of the package at path, with the options chosen on the command line."""
    format = chosen.pop("format")
    chosen["secrets"] = list(chosen.get("secrets") or ())
    return formats.load(path, name, format, formats.Options(**chosen))
