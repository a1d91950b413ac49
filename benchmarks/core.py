"""The core benchmarks of issue 3, each side by side in one run, reported as medians and ratios:

1. warm call round trip: f.remote() on a warm container vs a Ray actor call vs a raw Unix-socket
   ping-pong (the floor);
2. fan-out: f.map over trivial inputs, a plain @app.function() and a tuned one, vs Ray tasks
   vs multiprocessing.Pool;
3. cold start: first call of a scaled-to-zero function vs creating a Ray actor and calling it
   vs `python -c pass`;
4. burst: 64 one-second calls with max_containers=16, makespan vs the ideal 4 s;
5. metering accuracy: metered container-seconds vs lifetimes measured from /proc.

    python benchmarks/core.py              # everything, writes docs/benchmarks.md's section
    python benchmarks/core.py --only warm  # one part; --quick for smaller sizes
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_app  # noqa: E402
from report import write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def latency_table(results: dict[str, list[float]], baseline: str, label: str
                  ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """p50 and p99 of each system, and each p50 as a ratio of the baseline's."""
    rows = {k: {"p50": statistics.median(v), "p99": pct(v, 0.99)} for k, v in results.items()}
    base = rows[baseline]["p50"]
    lines = [f"| system | p50 | p99 | p50 vs {label} |", "|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {ms(r['p50'])} | {ms(r['p99'])} | {r['p50'] / base:.2f}x |")
    return rows, lines


# ---- servers ---------------------------------------------------------------------------------


class Server:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        extra_env = env or {}
        self.root = Path(tempfile.mkdtemp(prefix="firebox-bench-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
        env["FIREBOX_CONFIG_DIR"] = str(self.root / "config")
        env.update(extra_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(self.port),
             "--state-dir", str(self.root / "state")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import tomllib

        import httpx

        for _ in range(300):
            try:
                httpx.get(self.url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        with open(self.root / "config" / "config.toml", "rb") as f:
            written = tomllib.load(f)
        token = written["default"]["token"]  # the profile the server wrote
        os.environ["FIREBOX_SERVER_URL"] = self.url
        os.environ["FIREBOX_TOKEN"] = token

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "firebox.cli.main", *args],
                              capture_output=True, text=True, check=True).stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


# ---- 1. warm call ----------------------------------------------------------------------------


def _echo_server(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    conn, _ = srv.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def unix_pingpong(n: int) -> list[float]:
    path = tempfile.mktemp(prefix="fb-bench-", suffix=".sock")
    proc = multiprocessing.Process(target=_echo_server, args=(path,), daemon=True)
    proc.start()
    c = socket.socket(socket.AF_UNIX)
    while True:  # the path exists once bound, which is a moment before the server listens
        try:
            c.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.001)
    times = []
    for i in range(n):
        t = time.perf_counter()
        c.sendall(b"x" * 64)
        c.recv(65536)
        times.append(time.perf_counter() - t)
    c.close()
    proc.join(5)
    os.unlink(path)
    return times


def _channel_round_trips(n: int) -> list[float]:
    """An empty request on the SDK's call channel, from the caller's thread as a call goes: the
    part of a call's latency that is transport, not scheduling or the container."""
    from firebox import _sync
    from firebox import client as client_mod

    channel = client_mod.current().channel
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _sync.run(channel.request("ping", {}))
        times.append(time.perf_counter() - t)
    return times


def bench_warm(n: int) -> dict[str, object]:
    import ray

    results = {}
    for _ in range(20):
        bench_app.noop.remote(0)
    times = []
    for i in range(n):
        t = time.perf_counter()
        bench_app.noop.remote(i)
        times.append(time.perf_counter() - t)
    results["firebox"] = times
    results["firebox call channel floor (ping)"] = _channel_round_trips(n)

    @ray.remote
    class Actor:
        def ping(self, x: int) -> int:
            return x

    actor = Actor.remote()
    for _ in range(20):
        ray.get(actor.ping.remote(0))
    times = []
    for i in range(n):
        t = time.perf_counter()
        ray.get(actor.ping.remote(i))
        times.append(time.perf_counter() - t)
    results["ray actor"] = times
    ray.kill(actor)
    results["unix socket floor"] = unix_pingpong(n)
    rows, lines = latency_table(results, "ray actor", "Ray")
    return {"rows": rows, "table": lines, "n": n}


# ---- 2. fan-out ------------------------------------------------------------------------------


def trivial(x: int) -> int:
    return x + 1


def bench_fanout(n: int, n_plain: int, n_ray: int) -> dict[str, object]:
    import ray

    rates = {}
    # As a user writes it: @app.function(), one input at a time per container.
    list(bench_app.noop.map(range(100)))  # warm the pool
    t = time.perf_counter()
    done = sum(1 for _ in bench_app.noop.map(range(n_plain)))
    rates["firebox map, plain @app.function()"] = n_plain / (time.perf_counter() - t)
    assert done == n_plain
    # Tuned: @concurrent(max_inputs=64) on at most 2 containers.
    list(bench_app.inc.map(range(100)))
    t = time.perf_counter()
    out = list(bench_app.inc.map(range(n)))
    rates["firebox map, tuned (max_inputs=64)"] = n / (time.perf_counter() - t)
    assert out[-1] == n

    @ray.remote
    def inc(x: int) -> int:
        return x + 1

    ray.get([inc.remote(i) for i in range(100)])
    t = time.perf_counter()
    ray.get([inc.remote(i) for i in range(n_ray)])
    rates["ray tasks"] = n_ray / (time.perf_counter() - t)
    with multiprocessing.Pool(os.cpu_count() or 2) as pool:
        pool.map(trivial, range(100))
        t = time.perf_counter()
        pool.map(trivial, range(n))
        rates["multiprocessing.Pool"] = n / (time.perf_counter() - t)
    lines = ["| system | inputs/s | vs Ray |", "|---|---|---|"]
    for k, r in rates.items():
        lines.append(f"| {k} | {r:,.0f} | {r / rates['ray tasks']:.1f}x |")
    return {"rates": rates, "table": lines, "n": n, "n_plain": n_plain, "n_ray": n_ray}


# ---- 3. cold start ---------------------------------------------------------------------------


def bench_cold(trials: int) -> dict[str, object]:
    import ray

    results: dict[str, list[float]] = {"firebox": [], "ray actor": [], "python -c pass": []}
    for i in range(trials):
        # A new parameter value is a new pool: its first call starts a container from zero.
        # Pools scale from zero one at a time here, as they do in use, so the server's standby
        # runtimes have refilled; a burst of starts is what part 4 measures.
        time.sleep(0.5)
        t = time.perf_counter()
        bench_app.Cold(i=1_000_000 + i + int(time.time())).ping.remote()
        results["firebox"].append(time.perf_counter() - t)

    @ray.remote
    class Actor:
        def ping(self) -> int:
            return 1

    for _ in range(trials):
        t = time.perf_counter()
        a = Actor.remote()
        ray.get(a.ping.remote())
        results["ray actor"].append(time.perf_counter() - t)
        ray.kill(a)
    for _ in range(trials):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        results["python -c pass"].append(time.perf_counter() - t)
    rows, lines = latency_table(results, "python -c pass", "python -c pass")
    return {"rows": rows, "table": lines, "trials": trials}


# ---- 4. burst --------------------------------------------------------------------------------


def bench_burst(server: Server) -> dict[str, object]:
    t0 = time.time()
    starts = list(bench_app.sleep_one.map(range(64)))
    makespan = time.time() - t0
    first_on: dict[str, float] = {}
    for started, cid in starts:
        first_on[cid] = min(first_on.get(cid, started), started)
    order = sorted(first_on.values())
    time_to_16 = (order[15] - t0) if len(order) >= 16 else float("nan")
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| makespan of 64 × 1 s calls, max_containers=16 | {makespan:.2f} s |",
        "| ideal (64 / 16 × 1 s) | 4.00 s |",
        f"| makespan / ideal | {makespan / 4.0:.2f}x |",
        f"| distinct containers used | {len(first_on)} |",
        f"| time until 16 containers ran an input | {time_to_16:.2f} s |",
    ]
    return {"makespan": makespan, "time_to_16": time_to_16, "table": lines}


# ---- 5. metering accuracy --------------------------------------------------------------------


def _runtime_pids(server_url: str) -> dict[int, str]:
    """Container processes of this benchmark's server, by their environment."""
    found = {}
    mark = f"FIREBOX_SERVER_URL={server_url}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if mark not in env:
            continue
        for item in env:
            if item.startswith(b"FIREBOX_CONTAINER_ID="):
                found[int(pid)] = item.split(b"=", 1)[1].decode()
                break
        else:  # a standby runtime that took on a container: its cgroup is named after it
            try:
                cgroup = open(f"/proc/{pid}/cgroup").read().splitlines()
            except OSError:
                continue
            names = {line.rsplit("/", 1)[-1] for line in cgroup if "/firebox/" in line}
            found.update({int(pid): n for n in names if n.startswith("ta-")})
    return found


def bench_metering(server: Server) -> dict[str, object]:
    seen: dict[str, list[float]] = {}  # container id -> [first seen, last seen]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            now = time.time()
            for _pid, cid in _runtime_pids(server.url).items():
                seen.setdefault(cid, [now, now])[1] = now
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    metered_app = bench_app.metering_app
    with metered_app.run(show_logs=False):
        list(bench_app.metered.map([0.5] * 8))
        app_id = metered_app.app_id
    time.sleep(1.0)
    stop.set()
    watcher.join()
    report = json.loads(server.cli("usage", "--json", "--app", app_id))
    metered = report["total"]["container_seconds"]
    outside = sum(last - first for first, last in seen.values())
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| containers | {len(seen)} |",
        f"| metered container-seconds | {metered:.3f} s |",
        f"| lifetimes seen from /proc (5 ms polling) | {outside:.3f} s |",
        f"| difference | {100 * (metered - outside) / outside:+.2f}% |",
    ]
    return {"metered": metered, "outside": outside, "table": lines}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["warm", "fanout", "cold", "burst", "metering"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import ray

    server = Server()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    sections: list[str] = []
    try:
        with bench_app.app.run(show_logs=False):
            if args.only in (None, "warm"):
                r = bench_warm(200 if args.quick else 1000)
                sections += [f"### 1. Warm call round trip ({r['n']} calls each)", "",
                             *r["table"], ""]
            if args.only in (None, "fanout"):
                r = bench_fanout(10_000 if args.quick else 100_000,
                                 5_000 if args.quick else 20_000,
                                 5_000 if args.quick else 20_000)
                sections += [f"### 2. Fan-out (plain: {r['n_plain']:,} inputs; tuned and "
                             f"Pool: {r['n']:,}; Ray: {r['n_ray']:,} tasks)", "",
                             *r["table"], ""]
            if args.only in (None, "cold"):
                r = bench_cold(5 if args.quick else 15)
                sections += [f"### 3. Cold start ({r['trials']} trials each)", "",
                             *r["table"], ""]
            if args.only in (None, "burst"):
                r = bench_burst(server)
                sections += ["### 4. Burst", "", *r["table"], ""]
        if args.only in (None, "metering"):
            # A server of its own, so the containers seen from outside are only the metered ones.
            metering_server = Server()
            try:
                r = bench_metering(metering_server)
            finally:
                metering_server.stop()
            sections += ["### 5. Metering accuracy", "", *r["table"], ""]
    finally:
        ray.shutdown()
        server.stop()
    text = "\n".join(sections)
    print(text)
    if not args.no_write and args.only is None:
        write_section("core", "Core: calls, fan-out, cold start, burst, metering",
                      "python benchmarks/core.py", text)


if __name__ == "__main__":
    main()
