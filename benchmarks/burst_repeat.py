"""A burst of 64 one-second calls on at most 16 containers, then the same burst again once its
containers have scaled down: the first launches cold on a fresh server, the second shows
what the server's standby pool (FIREBOX_STANDBY) kept for it. Each as makespan / ideal (4 s).

    python benchmarks/burst_repeat.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_app  # noqa: E402
from core import Server  # noqa: E402


def burst(f: object) -> tuple[float, float]:
    t0 = time.time()
    starts = list(f.map(range(64)))  # type: ignore[attr-defined]
    makespan = time.time() - t0
    first: dict[str, float] = {}
    for started, cid in starts:
        first[cid] = min(first.get(cid, started), started)
    order = sorted(first.values())
    return makespan / 4.0, (order[15] - t0) if len(order) >= 16 else float("nan")


def main() -> None:
    server = Server()
    try:
        with bench_app.app.run(show_logs=False):
            f = bench_app.sleep_one.with_options(scaledown_window=2)
            time.sleep(8)  # the server's standby pool fills
            first = burst(f)
            time.sleep(20)  # its containers scale down (2 s idle); the pool grows meanwhile
            second = burst(f)
        print("| burst | makespan / ideal | 16 containers by |\n|---|---|---|")
        for name, (ratio, by) in (("first", first), ("second", second)):
            print(f"| {name} | {ratio:.2f}x | {by:.2f} s |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
