"""An image build's progress, streamed from the control plane to the client as JSON lines: one
event per line, its kind under TAG. The builder sends STEP, LOG and BUILT; the API ends the
stream with ERROR or DONE."""

from __future__ import annotations

from typing import Any

from .messages import TAG

STEP = "step"  # a step begins: cached, set (env, workdir: no layer) or building
LOG = "log"  # a line of a building step's output
BUILT = "built"  # a step's layer is built
ERROR = "error"  # the build failed at a step
DONE = "done"  # the image: its id, layers, env and workdir


def step(index: int, total: int, label: str, cached: bool,
         layer: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {TAG: STEP, "index": index, "total": total, "label": label,
                             "cached": cached}
    if layer is not None:
        event["layer"] = layer
    return event


def log(index: int, text: str) -> dict[str, Any]:
    return {TAG: LOG, "index": index, "text": text}


def built(index: int, layer: str, size_bytes: int, seconds: float) -> dict[str, Any]:
    return {TAG: BUILT, "index": index, "layer": layer, "size_bytes": size_bytes,
            "seconds": seconds}


def error(index: int, label: str, log_tail: str) -> dict[str, Any]:
    return {TAG: ERROR, "index": index, "label": label, "log_tail": log_tail}


def done(image_id: str, layers: list[str], env: dict[str, str], workdir: str | None,
         built: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """config: a registry image's (rootfs, user, entrypoint); empty for the others."""
    return {TAG: DONE, "image_id": image_id, "layers": layers, "env": env, "workdir": workdir,
            "built": built, "config": config or {}}
