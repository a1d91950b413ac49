"""The model gateway's overhead and its routing, side by side in one run.

1. Overhead: the same engine (tinylm, tests/engines/tinylm.py) called directly on the host vs
   through firebox's `/v1` (a @model_api web_server function, one replica, concurrency 64):
   latency per request (a one-token chat completion, p50/p99), time to first token on a
   stream, and throughput at concurrency 8 and 32 (16-token completions). Both sides are
   driven by the same httpx client code; the difference is what the gateway adds.
2. Routing: a synthetic chat workload (conversations with a system prompt of their own and a
   history that grows each turn, interleaved) over three replicas, prefix-aware (the default)
   vs least-loaded; the share of prompt tokens the engines served from their KV cache.

    python benchmarks/gateway.py --runs 200   # writes docs/benchmarks.md's "gateway" section
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import gateway_app  # noqa: E402
from core import Server, latency_table, ms  # noqa: E402
from report import write_section  # noqa: E402

ENGINE = Path(__file__).resolve().parent.parent / "tests" / "engines" / "tinylm.py"
ONE_TOKEN = {"max_tokens": 1, "messages": [{"role": "user", "content": "Hello there."}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _latencies(client: httpx.AsyncClient, model: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.post("/chat/completions", json={"model": model, **ONE_TOKEN})
        r.raise_for_status()
        out.append(time.perf_counter() - t)
    return out


async def _ttft(client: httpx.AsyncClient, model: str, n: int) -> list[float]:
    out = []
    body = {"model": model, "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Stream to me."}]}
    for _ in range(n):
        t = time.perf_counter()
        async with client.stream("POST", "/chat/completions", json=body) as r:
            first = None
            async for line in r.aiter_lines():
                if first is None and '"content": "' in line and '"content": ""' not in line:
                    first = time.perf_counter() - t
            out.append(first if first is not None else time.perf_counter() - t)
    return out


async def _throughput(client: httpx.AsyncClient, model: str, concurrency: int,
                      seconds: float) -> float:
    body = {"model": model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Tell me a story."}]}
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            (await client.post("/chat/completions", json=body)).raise_for_status()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def _client(base: str, token: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=120,
                             limits=httpx.Limits(max_connections=64))


async def overhead(server: Server, token: str, runs: int, seconds: float) -> list[str]:
    port = _free_port()
    direct = subprocess.Popen([sys.executable, str(ENGINE), "serve", "--port", str(port),
                               "--served-model-name", "bench"])
    try:
        sides = {"engine direct": (_client(f"http://127.0.0.1:{port}/v1", None), "bench"),
                 "through firebox /v1": (_client(f"{server.url}/v1", token), "bench")}
        for client, model in sides.values():  # ready and warm
            for _ in range(100):
                try:
                    await _latencies(client, model, 1)
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            await _latencies(client, model, 20)
        latency: dict[str, list[float]] = {k: [] for k in sides}
        ttft: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(5):  # interleaved rounds, so drift on a noisy machine hits both
            for name, (client, model) in sides.items():
                latency[name] += await _latencies(client, model, runs // 5)
                ttft[name] += await _ttft(client, model, max(1, runs // 20))
        _, lat_lines = latency_table(latency, "engine direct", "direct")
        _, ttft_lines = latency_table(ttft, "engine direct", "direct")
        rates: dict[tuple[str, int], float] = {}
        for concurrency in (8, 32):
            runs: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(3):  # interleaved, as above
                for name, (client, model) in sides.items():
                    runs[name].append(await _throughput(client, model, concurrency, seconds))
            for name, found in runs.items():
                rates[(name, concurrency)] = statistics.median(found)
        added = (statistics.median(latency["through firebox /v1"])
                 - statistics.median(latency["engine direct"]))
        added_ttft = (statistics.median(ttft["through firebox /v1"])
                      - statistics.median(ttft["engine direct"]))
        lines = [f"One-token chat completion ({runs} requests a side, interleaved):", "",
                 *lat_lines, "", f"Added p50: **{ms(added)}**.", "",
                 f"Time to first token, 8-token stream ({5 * max(1, runs // 20)} a side):", "",
                 *ttft_lines, "", f"Added p50: **{ms(added_ttft)}**.", "",
                 f"Throughput, 16-token completions (median of 3 interleaved x {seconds:g} s):", "",
                 "| concurrency | engine direct | through firebox /v1 | ratio |",
                 "|---|---|---|---|"]
        for concurrency in (8, 32):
            d, f = rates[("engine direct", concurrency)], rates[("through firebox /v1",
                                                                 concurrency)]
            lines.append(f"| {concurrency} | {d:.0f} req/s | {f:.0f} req/s | {f / d:.2f} |")
        for client, _ in sides.values():
            await client.aclose()
        return lines
    finally:
        direct.terminate()
        direct.wait()


def _workload(conversations: int, turns: int, seed: int) -> list[tuple[int, list[dict]]]:
    """(conversation, messages) per request: each conversation's turns in order, the
    conversations interleaved at random."""
    rng = random.Random(seed)
    systems = [f"You are assistant number {i}. " + "Follow the house style carefully. " * 30
               for i in range(conversations)]
    histories: list[list[dict]] = [[{"role": "system", "content": s}] for s in systems]
    order = [c for c in range(conversations) for _ in range(turns)]
    rng.shuffle(order)
    requests = []
    for c in order:
        turn = len(histories[c]) // 2
        histories[c].append({"role": "user", "content": f"Question {turn} of chat {c}: " +
                             "please elaborate. " * rng.randint(2, 8)})
        requests.append((c, list(histories[c])))
        histories[c].append({"role": "assistant", "content": f"Answer {turn}. " * 10})
    return requests


async def routing(server: Server, token: str, conversations: int, turns: int) -> list[str]:
    requests = _workload(conversations, turns, seed=7)
    lines = [f"{conversations} conversations x {turns} turns, three replicas, 4 requests at a "
             "time:", "", "| routing | prompt tokens | from KV cache | hit rate | p50 latency |",
             "|---|---|---|---|---|"]
    async with _client(f"{server.url}/v1", token) as client:
        for model, label in (("by-prefix", "prefix-aware (default)"),
                             ("spread", "least-loaded")):
            for _ in range(3):
                await client.post("/chat/completions", json={"model": model, **ONE_TOKEN})
            prompt = cached = 0
            times: list[float] = []
            queue = list(requests)

            async def worker() -> None:
                nonlocal prompt, cached
                while queue:
                    _, messages = queue.pop(0)
                    t = time.perf_counter()
                    r = await client.post("/chat/completions", json={
                        "model": model, "max_tokens": 2, "messages": messages})  # noqa: B023
                    times.append(time.perf_counter() - t)
                    usage = r.json()["usage"]
                    prompt += usage["prompt_tokens"]
                    cached += usage["prompt_tokens_details"]["cached_tokens"]

            await asyncio.gather(*(worker() for _ in range(4)))
            lines.append(f"| {label} | {prompt:,} | {cached:,} | {cached / prompt:.0%} | "
                         f"{ms(statistics.median(times))} |")
    return lines


async def run(args: argparse.Namespace, server: Server) -> str:
    token = server.token
    sections = ["The engine is tinylm on the CPU, sharing the machine's cores with the control "
                "plane: the overhead's worst case (a GPU engine's time is on the GPU). Goal: at "
                "most 1 ms added p50 and 95% of direct throughput (LiteLLM's proxy publishes "
                "about 3 ms added).", "",
                "### 1. Overhead: the engine direct vs through /v1", "",
                *await overhead(server, token, args.runs, args.seconds), "",
                "### 2. Routing: KV cache reuse", "",
                *await routing(server, token, args.conversations, args.turns), ""]
    return "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    server = Server()
    server.token = os.environ["FIREBOX_TOKEN"]  # the profile the server wrote
    try:
        with gateway_app.app.run(show_logs=False):
            text = asyncio.run(run(args, server))
    finally:
        server.stop()
    print(text)
    if not args.no_write:
        write_section("gateway", "Model gateway: overhead and prefix-aware routing",
                      f"python benchmarks/gateway.py --runs {args.runs}", text)


if __name__ == "__main__":
    main()
