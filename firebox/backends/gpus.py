"""This machine's GPUs (from NVML, nvidia-smi, or a fake inventory in configuration) and how a
function's gpu= request picks among them."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..wire import settings

log = logging.getLogger("firebox.backends.gpus")

ANY = "any"
# Nodes every CUDA process needs besides its own /dev/nvidiaN.
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_KNOWN = ("B200", "H200", "H100", "A100", "L40S", "A10G", "A10", "L4", "T4", "V100")


@dataclass(frozen=True)
class Gpu:
    index: int
    type: str  # short name as functions ask for it: "H100", "A100-80GB"
    fake: bool = False


def short_type(name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100-80GB'; 'NVIDIA H100 80GB HBM3' -> 'H100'."""
    upper = name.upper().replace("NVIDIA", "").strip()
    for known in _KNOWN:
        if re.search(rf"(^|[^A-Z0-9]){known}($|[^A-Z0-9])", upper):
            if known == "A100":
                return "A100-80GB" if "80G" in upper else "A100-40GB"
            return known
    return upper.replace(" ", "-") or "GPU"


def parse_fake(text: str) -> list[Gpu]:
    gpus: list[Gpu] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition(":")
        for _ in range(int(count or 1)):
            gpus.append(Gpu(len(gpus), kind.strip().upper(), fake=True))
    return gpus


def _from_nvml() -> list[Gpu] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            out.append(Gpu(i, short_type(name.decode() if isinstance(name, bytes) else name)))
        return out
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi() -> list[Gpu] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    out = []
    for line in text.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            out.append(Gpu(int(index), short_type(name)))
    return out


def inventory() -> list[Gpu]:
    """The GPUs containers may reserve: the fake inventory when configured, else the real ones."""
    fake = settings.FAKE_GPUS.get()
    if fake is not None:
        return parse_fake(fake)
    for source in (_from_nvml, _from_nvidia_smi):
        found = source()
        if found is not None:
            return found
    return []


# ---- requests ----------------------------------------------------------------------------------
# A function's spec holds gpu as a list of acceptable options, best first:
# [{"type": "H100", "count": 2}, {"type": "any", "count": 1}]


def options(request: Any) -> list[tuple[str, int]]:
    """The (type, count) options of a spec's gpu entry; [] for none."""
    if not request:
        return []
    return [(str(o["type"]).upper(), int(o["count"])) for o in request]


def matches(wanted: str, have: str) -> bool:
    wanted, have = wanted.upper(), have.upper()
    return wanted == ANY.upper() or have == wanted or have.startswith(wanted + "-")


def pick(free: Iterable[Gpu], request: Any) -> tuple[int, ...] | None:
    """Indices of GPUs for the first option that free GPUs can satisfy, or None."""
    pool = sorted(free, key=lambda g: g.index)
    for kind, count in options(request):
        fitting = [g.index for g in pool if matches(kind, g.type)]
        if len(fitting) >= count:
            return tuple(fitting[:count])
    return None


def describe(request: Any) -> str:
    return " or ".join(f"{kind}:{count}" if count > 1 else kind for kind, count in options(request))


def summary(gpus: Sequence[Gpu]) -> str:
    if not gpus:
        return "no GPUs"
    counts: dict[str, int] = {}
    for g in gpus:
        counts[g.type] = counts.get(g.type, 0) + 1
    return ", ".join(f"{n} x {kind}" for kind, n in counts.items())


def device_nodes(indices: Iterable[int], dev: Path = Path("/dev")) -> list[str]:
    """The /dev/nvidia* nodes a container with these GPUs needs, those that exist here."""
    names = [f"nvidia{i}" for i in indices] + list(CONTROL_NODES)
    nodes = [str(dev / n) for n in names if (dev / n).exists()]
    caps = dev / "nvidia-caps"
    if caps.is_dir():
        nodes.append(str(caps))
    return nodes
