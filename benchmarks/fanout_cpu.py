"""Where a fan-out's time goes: maps of trivial inputs on a fresh local server, each reported
with its rate and the CPU seconds of the client, the control plane and its containers (read
from /proc through psutil), so a change's effect per input can be told from noise.

    python benchmarks/fanout_cpu.py                 # plain @app.function(), 3 maps of 20,000
    python benchmarks/fanout_cpu.py --tuned -n 50000
To compare two trees, run it from outside the repository with PYTHONPATH set to each in turn.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
import bench_app  # noqa: E402
from core import Server  # noqa: E402


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        seconds[p.pid] = t.user + t.system
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--maps", type=int, default=3)
    parser.add_argument("--tuned", action="store_true", help="@concurrent(max_inputs=64)")
    args = parser.parse_args()
    f = bench_app.inc if args.tuned else bench_app.noop
    server = Server()
    plane = psutil.Process(server.proc.pid)
    me = psutil.Process()
    try:
        with bench_app.app.run(show_logs=False):
            list(f.map(range(100)))  # warm the pool
            print("| inputs/s | client CPU | control plane CPU | containers CPU |  (per input)")
            print("|---|---|---|---|")
            for _ in range(args.maps):
                mine, before = me.cpu_times(), cpu_seconds([plane, *plane.children(True)])
                t = time.perf_counter()
                assert sum(1 for _ in f.map(range(args.n))) == args.n
                wall = time.perf_counter() - t
                after = cpu_seconds([plane, *plane.children(True)])
                used = {pid: s - before.get(pid, 0.0) for pid, s in after.items()}
                client = sum(me.cpu_times()[:2]) - sum(mine[:2])
                rest = sum(s for pid, s in used.items() if pid != plane.pid)
                us = 1e6 / args.n
                print(f"| {args.n / wall:,.0f} | {client * us:.0f} us | "
                      f"{used.get(plane.pid, 0.0) * us:.0f} us | {rest * us:.0f} us |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
