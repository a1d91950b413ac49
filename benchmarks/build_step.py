"""What an uncached build step costs: `run_commands("true")` built by the image builder on its
own (no server), with the build container's network namespace taken from a pool made ahead (as
the server gives it) and with loopback only, interleaved so drift hits both alike; and the part
of it that is the step's mask of the host's secrets. Needs root, bubblewrap, iproute2 and
nftables.

    python benchmarks/build_step.py --runs 30
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from firebox.backends import isolation, netns
from firebox.images import builder
from firebox.store.blobs import BlobStore


async def step_seconds(b: builder.Builder) -> float:
    async def emit(event: dict[str, Any]) -> None:
        pass

    async def record(layer: str, info: dict[str, Any]) -> None:
        pass

    # A step no run made before: its layer id is new, so it is built, not found.
    step = {"kind": "run", "commands": [f"true {secrets.token_hex(8)}"], "label": "true"}
    start = time.perf_counter()
    await b.build({"python": builder.host_python(), "steps": [step]}, emit, record, "ws-bench")
    return time.perf_counter() - start


def mask_seconds(scratch: Path) -> float:
    start = time.perf_counter()
    isolation.sandbox_base(Path(tempfile.mkdtemp(dir=scratch)), False)
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    scratch = Path(tempfile.mkdtemp(prefix="build-bench-"))
    netns.start()
    pool = netns.Pool(2)
    try:
        blobs = BlobStore(scratch / "blobs")
        variants = {"loopback only": builder.Builder(scratch / "a", blobs, [scratch]),
                    "egress namespace": builder.Builder(scratch / "b", blobs, [scratch], pool)}
        times: dict[str, list[float]] = {name: [] for name in variants}
        masks = []
        for _ in range(runs):
            await asyncio.to_thread(pool.fill)  # as the backend refills it, off the step's path
            for name, b in variants.items():
                times[name].append(await step_seconds(b))
            masks.append(mask_seconds(scratch))
        print(f"{'run_commands(true), uncached':<30} {'median ms':>10}")
        for name, values in times.items():
            print(f"{name:<30} {statistics.median(values) * 1000:>10.1f}")
        print(f"{'of which the mask':<30} {statistics.median(masks) * 1000:>10.1f}")
    finally:
        pool.close()
        netns.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
