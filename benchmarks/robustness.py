"""What a real `firebox server` withstands: its memory under what users send, and how many
finished inputs a kill -9 mid-map makes run again.

    python benchmarks/robustness.py --only memory   # 200 MB JSON body, 1 GiB blob up and down,
                                                    # an 80 MB WebSocket message, 150 MiB of logs
    python benchmarks/robustness.py --only reruns   # kill -9 mid-map of 10,000 inputs, restart
    python benchmarks/robustness.py --only reruns --stall 2  # ... while commits wait 2 s
    python benchmarks/robustness.py --only fanout   # the core benchmark's firebox map row
    python benchmarks/robustness.py --only concurrent  # 50 clients at once, each sending a
                                                    # 15 MiB JSON body, then a 60 MiB msgpack one
    python benchmarks/robustness.py --only queued   # spawn_map of 200,000 inputs of 4 KiB that
                                                    # wait in the queue

Each server runs with a temporary state and config directory (never ~/.firebox). Memory is the
server process's resident set, sampled from /proc every 10 ms.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import bench_app  # noqa: E402
import robustness_app  # noqa: E402

MB = 1024 * 1024


class Server:
    """A `firebox server` process that can be killed and started again on the same state."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="firebox-robust-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
        self.env["FIREBOX_CONFIG_DIR"] = str(self.root / "config")
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(self.port),
             "--state-dir", str(self.root / "state")],
            env=self.env, stdout=open(self.root / "server.log", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"the server did not start: {self.root / 'server.log'}")
        with open(self.root / "config" / "config.toml", "rb") as f:
            self.token = tomllib.load(f)["token"]
        os.environ["FIREBOX_SERVER_URL"] = self.url
        os.environ["FIREBOX_TOKEN"] = self.token

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Sampler:
    """The peak resident set of a server since the last reset, sampled in a thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_mb())
            except OSError:
                pass
            time.sleep(0.01)

    def reset(self) -> float:
        self.peak = now = self.server.rss_mb()
        return now

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def settle(server: Server, seconds: float = 5.0) -> float:
    time.sleep(seconds)
    return server.rss_mb()


# ---- memory ----------------------------------------------------------------------------------


def json_body(size: int) -> bytes:
    head, tail = b'{"name": "big", "pad": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def chunks(data: bytes, size: int = MB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def blob_chunks(total: int) -> Iterator[bytes]:
    block = hashlib.sha256(b"firebox").digest() * (MB // 32)
    for _ in range(total // MB):
        yield block


def bench_memory(json_mb: int, blob_mb: int, logs_mb: int, message_mb: int) -> list[str]:
    server = Server()
    server.start()
    sampler = Sampler(server)
    headers = {"authorization": f"Bearer {server.token}"}
    rows = ["| what | status | server RSS before | peak | after 5 s |", "|---|---|---|---|---|"]
    try:
        settle(server, 3)

        def measure(what: str, send: object) -> None:
            before = sampler.reset()
            status = send()  # type: ignore[operator]
            after = settle(server)
            rows.append(f"| {what} | {status} | {before:.0f} MB | {sampler.peak:.0f} MB | "
                        f"{after:.0f} MB |")
            print(rows[-1], flush=True)

        body = json_body(json_mb * MB)

        def post(content: object) -> object:
            try:
                return httpx.post(server.url + "/v1/apps", content=content,  # type: ignore
                                  headers={**headers, "content-type": "application/json"},
                                  timeout=120).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        measure(f"{json_mb} MB JSON body, Content-Length", lambda: post(body))
        measure(f"{json_mb} MB JSON body, chunked", lambda: post(chunks(body)))

        digest = hashlib.sha256()
        for block in blob_chunks(blob_mb * MB):
            digest.update(block)

        def put_blob() -> object:
            response = httpx.put(
                f"{server.url}/v1/blobs/{digest.hexdigest()}", content=blob_chunks(blob_mb * MB),
                headers={**headers, "content-length": str(blob_mb * MB)}, timeout=600)
            return response.status_code

        measure(f"{blob_mb} MiB blob upload, streamed", put_blob)

        def get_blob() -> object:
            with httpx.stream("GET", f"{server.url}/v1/blobs/{digest.hexdigest()}",
                              headers=headers, timeout=600) as response:
                size = sum(len(piece) for piece in response.iter_bytes())
            return f"{response.status_code}, {size // MB} MiB"

        measure(f"{blob_mb} MiB blob download", get_blob)

        def big_message() -> object:
            from websockets.exceptions import ConnectionClosed
            from websockets.sync.client import connect

            try:
                with connect(server.url.replace("http", "ws") + "/v1/calls/ws",
                             additional_headers=headers, max_size=None,
                             compression=None) as ws:
                    ws.send(b"\0" * (message_mb * MB))
                    return f"answered {len(ws.recv(timeout=60))} bytes"
            except ConnectionClosed as exc:
                return f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"

        measure(f"{message_mb} MB WebSocket message on the call channel", big_message)

        def flood(follow: bool) -> object:
            with robustness_app.app.run(show_logs=False):
                follower = None
                if follow:
                    follower = subprocess.Popen(
                        [sys.executable, "-m", "firebox.cli.main", "app", "logs", "-f",
                         str(robustness_app.app.app_id)],
                        env={**server.env, "FIREBOX_SERVER_URL": server.url,
                             "FIREBOX_TOKEN": server.token},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                started = time.perf_counter()
                n = robustness_app.flood.remote(logs_mb)
                took = time.perf_counter() - started
            if follower is not None:
                follower.terminate()
                follower.wait()
            return f"{n:,} lines in {took:.1f} s"

        measure(f"a function prints {logs_mb} MiB of logs", lambda: flood(False))
        measure("the same, followed by `firebox app logs -f`", lambda: flood(True))
    finally:
        sampler.close()
        server.stop()
    return rows


# ---- concurrent bodies ----------------------------------------------------------------------


def send_until_answered(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
    """POST as the firebox client does, again after a 503 or a dropped connection; returns
    the final status and how many 503s came first."""
    busy, delay = 0, 0.05
    with httpx.Client(timeout=300) as http:
        while True:
            try:
                status = http.post(url, content=body, headers=headers).status_code
            except httpx.TransportError:
                status = 503
            if status != 503:
                return status, busy
            busy += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def bench_concurrent(clients: int, json_mb: int, msgpack_mb: int) -> list[str]:
    """Many clients send a body near its cap at the same moment, each to a fresh server."""
    import msgpack

    objects = (b'{"pad": [' + b"{}, " * (json_mb * MB // 4 - 4))[:-2] + b"]}"
    cases = [
        (f"{clients} clients at once, a {json_mb} MiB JSON body each", clients, "/v1/apps",
         json_body(json_mb * MB), "application/json"),
        # Parsed, a body of empty objects is 25 times its size: fewer clients, or the machine
        # runs out of memory before.
        (f"{clients // 5} clients at once, {json_mb} MiB of empty JSON objects each",
         clients // 5, "/v1/apps", objects, "application/json"),
        (f"{clients} clients at once, a {msgpack_mb} MiB msgpack body each", clients,
         "/v1/calls", msgpack.packb({"pad": b"\0" * (msgpack_mb * MB)}),
         "application/x-msgpack"),
    ]
    rows = ["| what | answers | 503s first | took | server RSS before | peak | after 5 s |",
            "|---|---|---|---|---|---|---|"]
    for what, n, path, body, content_type in cases:
        server = Server()
        server.start()
        sampler = Sampler(server)
        headers = {"authorization": f"Bearer {server.token}", "content-type": content_type}
        try:
            before = settle(server, 3)
            sampler.reset()
            results: list[tuple[int, int]] = []
            threads = [threading.Thread(target=lambda: results.append(send_until_answered(
                server.url + path, body, headers))) for _ in range(n)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - started
            after = settle(server)
        finally:
            sampler.close()
            server.stop()
        answers = collections.Counter(status for status, _ in results)
        busy = sum(b for _, b in results)
        rows.append(f"| {what} | {dict(sorted(answers.items()))} | {busy} | {took:.1f} s | "
                    f"{before:.0f} MB | {sampler.peak:.0f} MB | {after:.0f} MB |")
        print(rows[-1], flush=True)
    return rows


# ---- queued inputs ----------------------------------------------------------------------------


def bench_queued(n: int, kib: int) -> list[str]:
    """The server's memory while a map's inputs wait in the queue behind one busy container."""
    server = Server()
    server.start()
    sampler = Sampler(server)
    data = b"q" * (kib * 1024)
    try:
        with robustness_app.app.run(show_logs=False):
            before = settle(server, 2)
            sampler.reset()
            started = time.perf_counter()
            robustness_app.hold.spawn_map([data] * n)
            took = time.perf_counter() - started
            queued = settle(server)
            peak = sampler.peak
    finally:
        sampler.close()
        server.stop()
    return ["| inputs queued | accepted in | server RSS before | peak | queued, after 5 s |",
            "|---|---|---|---|---|",
            f"| {n:,} of {kib} KiB | {took:.1f} s | {before:.0f} MB | {peak:.0f} MB | "
            f"{queued:.0f} MB |"]


# ---- re-runs after a crash --------------------------------------------------------------------


def bench_reruns(n: int, kill_at: float, stall: float) -> list[str]:
    server = Server()
    server.start()
    trace = server.root / "trace.txt"
    trace.touch()
    results: list[int] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            with robustness_app.app.run(show_logs=False):
                results.extend(robustness_app.trace.map(range(n), kwargs={"path": str(trace)}))
        except BaseException as exc:
            errors.append(exc)

    def executed() -> list[int]:
        return [int(x) for x in trace.read_text().split()]

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    while len(executed()) < n * kill_at:
        if errors or not thread.is_alive():
            raise RuntimeError(f"the map failed or ended before the kill: {errors}")
        time.sleep(0.005)
    if stall:  # commits wait behind this writer, as behind a slow disk, for `stall` seconds
        lock = sqlite3.connect(server.root / "state" / "firebox.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        time.sleep(stall)
    server.kill()
    if stall:
        lock.rollback()
        lock.close()
    ran_before_kill = len(set(executed()))
    with sqlite3.connect(server.root / "state" / "firebox.db") as db:
        stored = db.execute("SELECT COUNT(*) FROM inputs WHERE state = 'done'").fetchone()[0]
    server.start()
    thread.join(600)
    server.stop()
    if errors:
        raise RuntimeError(f"the map failed after the restart: {errors[0]!r}")
    counts = collections.Counter(executed())
    reran = sum(c - 1 for c in counts.values())
    assert sorted(results) == list(range(n)) and len(counts) == n
    return ["| inputs | commits stalled | ran before the kill | outputs stored | ran twice |",
            "|---|---|---|---|---|",
            f"| {n:,} | {stall:g} s | {ran_before_kill:,} | {stored:,} | {reran:,} |"]


# ---- fan-out ----------------------------------------------------------------------------------


def bench_fanout(n: int) -> list[str]:
    server = Server()
    server.start()
    try:
        with bench_app.app.run(show_logs=False):
            list(bench_app.inc.map(range(100)))  # warm the pool
            started = time.perf_counter()
            out = list(bench_app.inc.map(range(n)))
            rate = n / (time.perf_counter() - started)
            assert out[-1] == n
    finally:
        server.stop()
    return ["| system | inputs/s |", "|---|---|", f"| firebox map | {rate:,.0f} |"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["memory", "reruns", "fanout", "concurrent", "queued"])
    parser.add_argument("--json-mb", type=int, default=200)
    parser.add_argument("--blob-mb", type=int, default=1024)
    parser.add_argument("--logs-mb", type=int, default=150)
    parser.add_argument("--message-mb", type=int, default=80)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--concurrent-json-mb", type=int, default=15)
    parser.add_argument("--concurrent-msgpack-mb", type=int, default=60)
    parser.add_argument("--queued", type=int, default=200_000)
    parser.add_argument("--queued-kib", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction run at the kill")
    parser.add_argument("--stall", type=float, default=0.0,
                        help="seconds the database is held locked before the kill")
    parser.add_argument("--fanout", type=int, default=100_000)
    args = parser.parse_args()
    if args.only in (None, "memory"):
        rows = bench_memory(args.json_mb, args.blob_mb, args.logs_mb, args.message_mb)
        print("\n".join(rows), flush=True)
    if args.only in (None, "concurrent"):
        rows = bench_concurrent(args.clients, args.concurrent_json_mb, args.concurrent_msgpack_mb)
        print("\n".join(rows), flush=True)
    if args.only in (None, "queued"):
        print("\n".join(bench_queued(args.queued, args.queued_kib)), flush=True)
    if args.only in (None, "reruns"):
        print("\n".join(bench_reruns(args.inputs, args.kill_at, args.stall)), flush=True)
    if args.only in (None, "fanout"):
        print("\n".join(bench_fanout(args.fanout)), flush=True)


if __name__ == "__main__":
    main()
