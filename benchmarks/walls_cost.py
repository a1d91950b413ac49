"""What the walls add to a container's launch under bubblewrap: the unprivileged user (setpriv)
and the network namespace (nsenter into one made ahead), each run interleaved with a launch
without them so drift hits all alike; and what making and removing a namespace costs (off the
launch path: namespaces are made ahead). Needs root, bubblewrap, iproute2 and nftables.

    python benchmarks/walls_cost.py --runs 100
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from firebox.backends import isolation, netns


def launch(sandbox: isolation.Walls) -> float:
    argv = isolation.launcher(isolation.NAMESPACES, ["/bin/true"], sandbox, {})
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    runs = parser.parse_args().runs
    scratch = Path(tempfile.mkdtemp(prefix="walls-bench-"))
    root = scratch / "root"
    root.mkdir()
    netns.start()
    made, removed = [], []
    try:
        variants = {"no walls": {}, "+ user": {"uid": 65534, "gid": 65534},
                    "+ user + netns": {"uid": 65534, "gid": 65534, "netns": True}}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, options in variants.items():
                link = None
                if options.get("netns"):
                    start = time.perf_counter()
                    link = netns.create(netns.CONTAINER_IF)
                    made.append(time.perf_counter() - start)
                sandbox = isolation.Walls("bench", root, hidden=[scratch],
                                            uid=options.get("uid"), gid=options.get("gid"),
                                            netns=link.path if link else None,
                                            block_network=link is None and "uid" in options)
                times[name].append(launch(sandbox))
                if link is not None:
                    start = time.perf_counter()
                    netns.remove(link)
                    removed.append(time.perf_counter() - start)
        base = times["no walls"]
        print(f"{'launch of /bin/true':<22} {'median ms':>10} {'adds ms':>8}")
        for name, values in times.items():
            adds = statistics.median(v - b for v, b in zip(values, base, strict=True))
            print(f"{name:<22} {statistics.median(values) * 1000:>10.1f} {adds * 1000:>+8.1f}")
        print(f"namespace made (ahead): median {statistics.median(made) * 1000:.1f} ms, "
              f"removed: {statistics.median(removed) * 1000:.1f} ms")
    finally:
        netns.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
