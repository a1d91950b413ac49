"""A map of 1,000,000 trivial inputs: its rate beside a 20,000-input map of the same function
in the same run, and the resident memory of the client and of the control plane sampled
through it (psutil, every 0.25 s), so growth with the number of inputs shows.

    python benchmarks/fanout_million.py               # 1,000,000 inputs
    python benchmarks/fanout_million.py -n 200000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
import bench_app  # noqa: E402
from core import Server  # noqa: E402

MIB = 1024 * 1024


class Sampler:
    """Resident set sizes of some processes, sampled in a thread."""

    def __init__(self, procs: dict[str, psutil.Process], every: float = 0.25) -> None:
        self.procs = procs
        self.every = every
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in procs}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        while not self.stopped.wait(self.every):
            for name, p in self.procs.items():
                try:
                    self.samples[name].append((time.perf_counter() - started,
                                               p.memory_info().rss))
                except psutil.Error:
                    pass

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def row(self, name: str) -> str:
        rss = [r for _, r in self.samples[name]]
        if not rss:
            return f"| {name} | - | - | - | - |"
        tenth = max(1, len(rss) // 10)
        first, last = statistics.median(rss[:tenth]), statistics.median(rss[-tenth:])
        return (f"| {name} | {rss[0] / MIB:.0f} MiB | {first / MIB:.0f} MiB | "
                f"{last / MIB:.0f} MiB | {max(rss) / MIB:.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1_000_000)
    args = parser.parse_args()
    server = Server()
    plane = psutil.Process(server.proc.pid)
    try:
        with bench_app.app.run(show_logs=False):
            list(bench_app.noop.map(range(100)))  # warm the pool
            t = time.perf_counter()
            assert sum(1 for _ in bench_app.noop.map(range(20_000))) == 20_000
            small = 20_000 / (time.perf_counter() - t)
            with Sampler({"client": psutil.Process(), "control plane": plane}) as sampler:
                t = time.perf_counter()
                count = total = 0
                for x in bench_app.noop.map(range(args.n)):
                    count += 1
                    total += x
                wall = time.perf_counter() - t
            assert count == args.n and total == args.n * (args.n - 1) // 2
            print(f"| map | inputs | inputs/s | vs the 20,000-input map |\n|---|---|---|---|\n"
                  f"| 20,000 inputs | 20,000 | {small:,.0f} | 1.00x |\n"
                  f"| {args.n:,} inputs | {args.n:,} | {args.n / wall:,.0f} | "
                  f"{args.n / wall / small:.2f}x |\n")
            print("| process | at start | first tenth (median) | last tenth (median) | peak |\n"
                  "|---|---|---|---|---|")
            for name in sampler.procs:
                print(sampler.row(name))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
