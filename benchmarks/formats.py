"""Foreign-format overhead: a warm job through RunPod's endpoint API and an unmodified RunPod
worker, a warm prediction of a Cog package and of a Truss through each of their APIs, beside a
plain firebox function doing the same work, in one run on one server.

Sides, each a warm container, one call at a time:
- plain: `@app.function()` returning a dict, called with `.remote()` (what a firebox user writes);
- plain over HTTP: the same call's nearest HTTP twin, `.spawn()` then `FunctionCall.get()`;
- runpod raw /runsync: httpx POSTs to /v2/{endpoint}/runsync of the worker package
  tests/packages/runpod/basic, as deployed by `firebox deploy DIR` (a sync handler, the SDK's
  default concurrency of 1);
- runpod client: the official client's `Endpoint.run_sync` on the same endpoint;
- runpod, concurrency_modifier 4: tests/packages/runpod/concurrent through raw /runsync (the
  worker keeps a job-take open while it runs a job);
- cog: tests/packages/cog/hello through Replicate's API (raw `POST /v1/predictions` with
  `Prefer: wait`, and the official client's `run`) and through Cog's HTTP API at its web URL;
- truss: tests/packages/truss/basic through Truss's API at its web URL and Baseten's path;
- the floors: each worker fed jobs by the job server alone (formats/runpod_worker.py's, on the
  host), without the control plane, the container or HTTP from a client: the RunPod SDK's own
  cadence, which no server can beat.

    python benchmarks/formats.py --runs 30   # writes docs/benchmarks.md's "formats" section
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import replicate
import runpod

sys.path.insert(0, str(Path(__file__).parent))
from core import Server, latency_table  # noqa: E402
from report import write_section  # noqa: E402

import firebox  # noqa: E402
from firebox.formats.runpod_worker import Job, JobServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / "tests" / "packages"
PACKAGES = ROOT / "runpod"
app = firebox.App("bench-formats")


@app.function(serialized=True)
def echo(job: dict) -> dict:
    return {"echo": job.get("text"), "job_id": "x", "worker": 0, "greeting": ""}


def _web_url(deployed: str) -> str:
    return re.search(r"\.http => (\S+)", deployed).group(1)


def _ok(fine: bool) -> None:
    assert fine


def timed(f: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        f()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


async def _direct(package: str, runs: int, warmup: int = 3) -> list[float]:
    server = JobServer()
    env = {**os.environ, **server.worker_env("bench-direct")}
    handler = PACKAGES / package / "handler.py"
    proc = subprocess.Popen([sys.executable, str(handler)], cwd=handler.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(server.polled.wait, 60)
        loop = asyncio.get_running_loop()
        out = []
        for i in range(warmup + runs):
            job = Job(f"job-{i}", {"text": "hi", "seconds": 0}, loop)
            t = time.perf_counter()
            server.offer(job)
            while True:
                event = await job.events.get()
                if event["kind"] == "job-done" and event["data"].get("status") != "IN_PROGRESS":
                    break
            server.forget(job.id)
            if i >= warmup:
                out.append(time.perf_counter() - t)
        return out
    finally:
        proc.kill()  # a worker that is asked to stop waits out its long-polled job-take
        proc.wait(10)
        server.close()


def direct(package: str, runs: int) -> list[float]:
    """The worker fed jobs by its job server alone: no control plane, no container, no HTTP
    client; the RunPod SDK's own floor."""
    return asyncio.run(_direct(package, runs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    server = Server()
    try:
        for package in ("basic", "concurrent"):
            server.cli("deploy", str(PACKAGES / package), "--name", f"bench-{package}")
        cog_url = _web_url(server.cli("deploy", str(ROOT / "cog" / "hello"), "--name",
                                      "bench/hello"))
        truss_url = _web_url(server.cli("deploy", str(ROOT / "truss" / "basic"), "--name",
                                        "bench-truss"))
        proxy = dict(re.findall(r"(Modal-Key|Modal-Secret): (\S+)",
                                server.cli("token", "proxy", "create")))
        token = os.environ["FIREBOX_TOKEN"]
        runpod.api_key = token
        runpod.endpoint_url_base = f"{server.url}/v2"
        http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120)

        def runsync(endpoint: str) -> Callable[[], object]:
            def call() -> object:
                doc = http.post(f"{server.url}/v2/{endpoint}/runsync",
                                json={"input": {"text": "hi", "seconds": 0}}).json()
                assert doc["status"] == "COMPLETED", doc
                return doc
            return call

        results: dict[str, list[float]] = {}
        with app.run():
            results["plain firebox function, .remote()"] = timed(
                lambda: echo.remote({"text": "hi"}), args.runs)
            results["plain firebox function, .spawn() + .get()"] = timed(
                lambda: echo.spawn({"text": "hi"}).get(), args.runs)
        results["runpod worker, raw POST /runsync"] = timed(runsync("bench-basic"), args.runs)
        client = runpod.Endpoint("bench-basic")
        results["runpod worker, official client run_sync"] = timed(
            lambda: client.run_sync({"text": "hi"}, timeout=120), args.runs)
        results["runpod worker with concurrency_modifier 4, raw POST /runsync"] = timed(
            runsync("bench-concurrent"), args.runs)
        replicate_client = replicate.Client(api_token=token, base_url=server.url)
        results["cog, raw POST /v1/predictions (Prefer: wait)"] = timed(
            lambda: _ok(http.post(f"{server.url}/v1/predictions", headers={"Prefer": "wait"},
                                  json={"version": "bench/hello", "input": {"text": "hi"}})
                        .json()["status"] == "succeeded"), args.runs)
        results["cog, official replicate client run"] = timed(
            lambda: replicate_client.run("bench/hello", input={"text": "hi"}), args.runs)
        web = httpx.Client(headers=proxy, timeout=120)
        results["cog, Cog's HTTP API at its web URL"] = timed(
            lambda: _ok(web.post(f"{cog_url}/predictions", json={"input": {"text": "hi"}})
                        .json()["status"] == "succeeded"), args.runs)
        results["truss, Truss's API at its web URL"] = timed(
            lambda: _ok(web.post(f"{truss_url}/v1/models/m:predict", json={"inputs": [1]})
                        .status_code == 200), args.runs)
        results["truss, Baseten's /model/{name}/production/predict"] = timed(
            lambda: _ok(http.post(f"{server.url}/model/bench-truss/production/predict",
                                  json={"inputs": [1]}).status_code == 200), args.runs)
        results["floor: the same worker fed by its job server alone"] = direct("basic", args.runs)
        results["floor: the concurrency_modifier 4 worker fed by its job server alone"] = direct(
            "concurrent", args.runs)
    finally:
        server.stop()
    rows, lines = latency_table(results, "plain firebox function, .remote()", "plain .remote()")
    slow = rows["runpod worker, raw POST /runsync"]["p50"]
    slow_floor = rows["floor: the same worker fed by its job server alone"]["p50"]
    fast = rows["runpod worker with concurrency_modifier 4, raw POST /runsync"]["p50"]
    fast_floor = rows["floor: the concurrency_modifier 4 worker fed by its job server alone"][
        "p50"]
    lines += [
        "",
        f"{args.runs} sequential warm calls a side (after 3 warm-up calls), one container each. "
        "A RunPod worker at the SDK's default concurrency of 1 asks for its next job only "
        "when its 1 s re-poll sleep ends (runpod's JobScaler sleeps 1 s while it is full), and "
        "one with room picks a taken job up on its 0.1 s loop: back-to-back jobs wait for the "
        f"SDK. firebox's own part is the difference to the floor: "
        f"{(slow - slow_floor) * 1000:.1f} ms p50 at concurrency 1 "
        f"({slow * 1000:.0f} vs {slow_floor * 1000:.0f} ms), "
        f"{(fast - fast_floor) * 1000:.1f} ms with concurrency_modifier 4 "
        f"({fast * 1000:.1f} vs {fast_floor * 1000:.1f} ms).",
        "Cog and Truss predictions have no such sleep: their rows are firebox's path plus the "
        "package's own server (coglet, and Truss's API in the container) against the plain "
        "function's "
        f"{rows['plain firebox function, .remote()']['p50'] * 1000:.2f} ms.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("formats", "Foreign formats: RunPod's path vs a plain function",
                      f"python benchmarks/formats.py --runs {args.runs}", text)


if __name__ == "__main__":
    main()
