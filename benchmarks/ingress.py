"""Ingress overhead: a trivial ASGI endpoint served through firebox's ingress (control plane ->
container WebSocket -> ASGI app) vs the same ASGI app served directly by uvicorn, in one run.

Each side gets the same loopback load generator (httpx, asyncio, keep-alive connections),
bounded in request count and time: latency with one request at a time (p50/p99), then
throughput with CONCURRENCY requests in flight.

    python benchmarks/ingress.py             # writes docs/benchmarks.md's "ingress" section
    python benchmarks/ingress.py --quick --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import ingress_app  # noqa: E402
from core import Server, pct  # noqa: E402
from report import write_section  # noqa: E402

CONCURRENCY = 8
TIME_CAP = 20.0  # seconds, for each measurement


async def latency(url: str, n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(20):
            (await http.get(url)).raise_for_status()
        deadline = time.perf_counter() + TIME_CAP
        for _ in range(n):
            t = time.perf_counter()
            reply = await http.get(url)
            out.append(time.perf_counter() - t)
            assert reply.status_code == 200 and reply.content == b"ok"
            if t > deadline:
                break
    return out


async def throughput(url: str, n: int) -> tuple[float, int]:
    done = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        start = time.perf_counter()
        deadline = start + TIME_CAP

        async def worker() -> None:
            nonlocal done
            while done < n and time.perf_counter() < deadline:
                done += 1
                reply = await http.get(url)
                assert reply.status_code == 200

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - start), done


def measure(url: str, n_latency: int, n_throughput: int) -> dict[str, float]:
    lat = asyncio.run(latency(url, n_latency))
    rps, count = asyncio.run(throughput(url, n_throughput))
    return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat), "rps": rps,
            "count": count}


def direct_uvicorn() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "ingress_app:trivial", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=Path(__file__).parent,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    n_lat, n_rps = (300, 2000) if args.quick else (2000, 20000)
    server = Server()
    proc, direct_url = direct_uvicorn()
    try:
        direct = measure(direct_url, n_lat, n_rps)
        with ingress_app.app.run(show_logs=False):
            url = ingress_app.endpoint.get_web_url()
            httpx.get(url, timeout=120).raise_for_status()  # start the container
            ours = measure(url, n_lat, n_rps)
    finally:
        proc.terminate()
        proc.wait(10)
        server.stop()

    def ms(s: float) -> str:
        return f"{s * 1000:.2f} ms"

    rows = [
        "| path | p50 | p99 | requests/s (concurrency %d) |" % CONCURRENCY,
        "| --- | --- | --- | --- |",
        f"| uvicorn serving the ASGI app directly | {ms(direct['p50'])} | {ms(direct['p99'])} "
        f"| {direct['rps']:.0f} |",
        f"| firebox ingress -> container | {ms(ours['p50'])} | {ms(ours['p99'])} "
        f"| {ours['rps']:.0f} |",
        "",
        f"Added p50 latency: {ms(ours['p50'] - direct['p50'])} (goal: at most 1 ms). "
        f"Throughput: {ours['rps'] / direct['rps']:.0%} of direct (goal: at least 70%). "
        f"Latency from {ours['n']} sequential requests a side, throughput from "
        f"{ours['count']} (firebox) and {direct['count']} (direct) requests.",
    ]
    text = "\n".join(rows)
    print(text)
    if not args.no_write:
        write_section("ingress", "Web endpoints: ingress vs direct uvicorn",
                      "python benchmarks/ingress.py", text)


if __name__ == "__main__":
    main()
