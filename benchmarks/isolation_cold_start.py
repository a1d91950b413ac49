"""What isolation adds to a cold start: process vs namespaces (bubblewrap) vs gvisor (runsc).

Two measurements, each mode interleaved with the others so drift hits all alike:

1. launch: a container's launch path without a server: cgroup made, process started under the
   isolation, Python imports the runtime module and exits, cgroup removed.
2. end to end: a first call to a function on a fresh container (single_use_containers=True),
   through a real `firebox server`: scheduling, launch, code download, import, run, answer.

    python benchmarks/isolation_cold_start.py --runs 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from firebox.backends import cgroups, isolation

RUNTIME_IMPORT = [sys.executable, "-c", "import firebox.runtime.container"]


def modes() -> list[str]:
    found = [isolation.PROCESS]
    if shutil.which("bwrap"):
        found.append(isolation.NAMESPACES)
    if shutil.which("runsc"):
        found.append(isolation.GVISOR)
    return found


def launch_once(mode: str, scratch: Path, n: int) -> float:
    cid = f"bench-{os.getpid()}-{mode}-{n}"
    root = scratch / "containers" / cid
    root.mkdir(parents=True)
    sandbox = isolation.Walls(cid, root, hidden=[scratch], scratch=scratch / "bundles" / cid,
                                runsc_root=scratch / "runsc")
    start = time.perf_counter()
    group = None
    env = dict(os.environ)
    argv = isolation.launcher(mode, RUNTIME_IMPORT, sandbox, env)
    if cgroups.available():
        group = cgroups.Cgroup.create(cid, cgroups.Limits(1.0, None, 256, None))
        argv = isolation.in_cgroup(argv, group.procs_files)
    subprocess.run(argv, check=True, cwd=root, env=env, stdin=subprocess.DEVNULL)
    if group is not None:
        group.remove()
    elapsed = time.perf_counter() - start
    if mode == isolation.GVISOR:
        subprocess.run(["runsc", "--root", str(scratch / "runsc"), "delete", "--force", cid],
                       capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    return elapsed


APP = textwrap.dedent('''
    import firebox

    app = firebox.App("isolation-bench")

    @app.function(isolation="process", single_use_containers=True)
    def on_process():
        return 1

    @app.function(isolation="namespaces", single_use_containers=True)
    def on_namespaces():
        return 1

    @app.function(isolation="gvisor", single_use_containers=True)
    def on_gvisor():
        return 1
''')


def end_to_end(runs: int, which: list[str], scratch: Path) -> dict[str, list[float]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    env["FIREBOX_CONFIG_DIR"] = str(scratch / "config")
    server = subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(port),
         "--state-dir", str(scratch / "state")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        token = (scratch / "config" / "config.toml").read_text().split('token = "')[1][:-2]
        os.environ.update({"FIREBOX_SERVER_URL": url, "FIREBOX_TOKEN": token})
        (scratch / "isolation_bench_app.py").write_text(APP)
        sys.path.insert(0, str(scratch))
        import isolation_bench_app as bench

        times: dict[str, list[float]] = {m: [] for m in which}
        with bench.app.run(show_logs=False):
            for m in which:  # warm the page cache and the server's code paths once
                getattr(bench, f"on_{m}").remote()
            for _ in range(runs):
                for m in which:
                    f = getattr(bench, f"on_{m}")
                    time.sleep(0.3)  # let the previous single-use container go
                    start = time.perf_counter()
                    f.remote()
                    times[m].append(time.perf_counter() - start)
        return times
    finally:
        server.terminate()
        server.wait(15)


def report(title: str, times: dict[str, list[float]]) -> None:
    """Per mode: median, min, p90, and what it adds to `process`: the median of the per-run
    differences (the modes run interleaved, so each run's pair saw the same machine)."""
    base = times[isolation.PROCESS]
    print(f"\n{title}")
    print(f"{'isolation':<12} {'median ms':>10} {'min ms':>8} {'p90 ms':>8} {'adds ms':>8}")
    for mode, values in times.items():
        adds = statistics.median(v - b for v, b in zip(values, base))
        ordered = sorted(values)
        med = statistics.median(ordered)
        p90 = ordered[min(len(ordered) - 1, len(ordered) * 9 // 10)]
        print(f"{mode:<12} {med * 1000:>10.1f} {ordered[0] * 1000:>8.1f} {p90 * 1000:>8.1f} "
              f"{adds * 1000:>+8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    which = modes()
    scratch = Path(tempfile.mkdtemp(prefix="firebox-isolation-bench-"))
    try:
        launch: dict[str, list[float]] = {m: [] for m in which}
        for m in which:
            launch_once(m, scratch, -1)  # warm-up
        for n in range(args.runs):
            for m in which:
                launch[m].append(launch_once(m, scratch, n))
        print(f"{args.runs} runs each, cgroups {'on' if cgroups.available() else 'off'}, "
              f"{os.cpu_count()} cores")
        report("launch (cgroup + isolation + python imports the runtime + exit)", launch)
        if not args.skip_end_to_end:
            report("end to end (first call on a fresh container, through the server)",
                   end_to_end(args.runs, which, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
