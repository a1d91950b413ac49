"""RunPod worker packages deployed unchanged (`firebox deploy DIR`) and called through the
official `runpod` client's Endpoint, pointed at the server's /v2: each package in
tests/packages/runpod/ is a real worker that installs the runpod SDK from its requirements.txt
and pulls its jobs by RunPod's worker protocol."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import runpod
from other_workspace import other_workspace_env

PACKAGES = Path(__file__).parent / "packages" / "runpod"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def endpoints(server) -> Iterator[str]:
    """Every package deployed under its directory's name (prefixed); the /v2 base URL."""
    for package in ("basic", "stream", "generator", "errors", "concurrent", "refresh", "broken"):
        extra = ["--max-containers", "1"] if package == "errors" else []
        done = server.cli("deploy", str(PACKAGES / package), "--name", f"rp-{package}", *extra,
                          timeout=300)
        assert done.returncode == 0, done.stderr
    runpod.api_key = server.token
    runpod.endpoint_url_base = f"{server.url}/v2"
    yield f"{server.url}/v2"


def endpoint(name: str) -> runpod.Endpoint:
    return runpod.Endpoint(f"rp-{name}")


def post(server, path: str, body: dict | None = None, token: str | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/{path}", json=body,
                      headers={"Authorization": f"Bearer {token or server.token}"}, timeout=120)


def test_a_sync_handler_answers_the_official_client(server, endpoints) -> None:
    basic = endpoint("basic")
    out = basic.run_sync({"text": "hi"}, timeout=120)
    assert out["echo"] == "hi" and out["job_id"].startswith("fc-")
    assert out["greeting"] == "hello from firebox.toml"  # the package's firebox.toml env

    job = basic.run({"text": "later", "seconds": 1})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS")
    assert job.output(timeout=60)["echo"] == "later"
    assert job.status() == "COMPLETED"

    doc = post(server, "rp-basic/runsync", {"input": {"text": "raw"}}).json()
    assert set(doc) == {"id", "status", "output", "delayTime", "executionTime"}
    assert doc["status"] == "COMPLETED" and doc["output"]["echo"] == "raw"
    assert doc["executionTime"] >= 0 and doc["delayTime"] >= 0
    again = httpx.get(f"{endpoints}/rp-basic/status/{doc['id']}",
                      headers={"Authorization": f"Bearer {server.token}"}).json()
    assert again["status"] == "COMPLETED" and again["output"] == doc["output"]

    health = basic.health()
    assert health["jobs"]["completed"] >= 3 and health["jobs"]["inQueue"] == 0
    assert health["workers"]["idle"] + health["workers"]["running"] >= 1


def test_generators_stream_and_aggregate(server, endpoints) -> None:
    # An async generator with return_aggregate_stream: the stream is also the result.
    assert endpoint("stream").run_sync({"prompt": "a b c"}, timeout=120) == ["A", "B", "C"]
    job = endpoint("stream").run({"prompt": "one two three"})
    assert list(job.stream()) == ["ONE", "TWO", "THREE"]
    assert job.status() == "COMPLETED"

    # A sync generator without it: streamed, and its result is an empty list, as on RunPod.
    job = endpoint("generator").run({"n": 3})
    assert list(job.stream()) == [{"i": i, "square": i * i} for i in range(3)]
    assert job.output(timeout=30) == []


def test_failures_are_failed_jobs_and_a_crash_is_survived(server, endpoints) -> None:
    failed = post(server, "rp-errors/runsync", {"input": {"mode": "error"}}).json()
    assert failed["status"] == "FAILED" and failed["error"] == "no prompt was given"

    raised = post(server, "rp-errors/runsync", {"input": {"mode": "raise"}}).json()
    assert raised["status"] == "FAILED"
    info = json.loads(raised["error"])  # RunPod's error document, as its SDK writes it
    assert info["error_type"] == "<class 'ValueError'>"
    assert info["error_message"] == "the model is not loaded"
    assert "rp_handler.py" in info["error_traceback"]

    crashed = post(server, "rp-errors/runsync", {"input": {"mode": "crash"}}).json()
    assert crashed["status"] == "FAILED" and "exited with code 3" in crashed["error"]
    after = post(server, "rp-errors/runsync", {"input": {"mode": "ok"}}).json()
    assert after["status"] == "COMPLETED" and after["output"]["mode"] == "ok"

    job = endpoint("errors").run({"mode": "progress"})
    seen_progress = False
    deadline = time.monotonic() + 60
    while (doc := job._fetch_job())["status"] != "COMPLETED":
        if doc["status"] == "IN_PROGRESS" and "output" in doc:
            assert doc["output"] == "half way"
            seen_progress = True
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert seen_progress and doc["output"] == "done"

    health = endpoint("errors").health()
    assert health["jobs"]["failed"] >= 3 and health["jobs"]["completed"] >= 2


def test_refresh_worker_starts_a_new_worker_per_job(endpoints) -> None:
    pids = [endpoint("refresh").run_sync({}, timeout=120)["pid"] for _ in range(3)]
    assert len(set(pids)) == 3


def test_concurrency_modifier_runs_jobs_at_once(endpoints) -> None:
    jobs = [endpoint("concurrent").run({"seconds": 2}) for _ in range(4)]
    outs = [j.output(timeout=120) for j in jobs]
    assert len({o["pid"] for o in outs}) == 1  # one worker (max_containers = 1 in its toml)
    starts = sorted(o["started"] for o in outs)
    ends = sorted(o["ended"] for o in outs)
    assert starts[-1] < ends[0], "the four jobs did not run at the same time"


def test_cancel_purge_and_webhooks(server, endpoints, webhook) -> None:
    hook, got = webhook
    errors = endpoint("errors")  # one container, one job at a time
    slow = errors.run({"mode": "slow", "seconds": 3})
    queued = [errors.run({"mode": "ok"}) for _ in range(2)]
    hooked = post(server, "rp-errors/run", {"input": {"mode": "ok"}, "webhook": hook}).json()
    deadline = time.monotonic() + 60
    while slow.status() != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert all(q.status() == "IN_QUEUE" for q in queued)
    assert errors.health()["jobs"]["inQueue"] == 3

    assert errors.purge_queue() == {"removed": 3, "status": "completed"}
    assert all(q._fetch_job()["status"] == "CANCELLED" for q in queued)
    assert slow.output(timeout=60)["mode"] == "slow"  # what runs is not purged

    done = post(server, "rp-errors/run", {"input": {"mode": "ok"}, "webhook": hook}).json()
    running = errors.run({"mode": "slow", "seconds": 8})
    while running.status() != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert running.cancel() == {"id": running.job_id, "status": "CANCELLED"}
    assert running._fetch_job()["status"] == "CANCELLED"

    deadline = time.monotonic() + 30
    while len(got) < 2:
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    by_id = {doc["id"]: doc for doc in got}
    assert by_id[hooked["id"]]["status"] == "CANCELLED"
    assert by_id[done["id"]]["status"] == "COMPLETED"
    assert by_id[done["id"]]["output"]["mode"] == "ok"


def test_a_worker_that_cannot_start_fails_its_job_saying_why(server, endpoints) -> None:
    doc = post(server, "rp-broken/runsync", {"input": {}}).json()
    assert doc["status"] == "FAILED"
    assert "exited with code 1 before it asked for a job" in doc["error"]
    logs = server.cli("app", "logs", "rp-broken")
    assert "No module named 'a_module_nobody_installed'" in logs.stdout + logs.stderr


def test_versions_are_endpoints_by_name_and_version(server, endpoints, tmp_path) -> None:
    for package in ("basic", "generator"):
        done = server.cli("deploy", str(PACKAGES / package), "--name", "rp-versions",
                          timeout=300)
        assert done.returncode == 0, done.stderr
    assert runpod.Endpoint("rp-versions:1").run_sync({"text": "v1"}, timeout=120)["echo"] == "v1"
    assert runpod.Endpoint("rp-versions").run_sync({"n": 2}, timeout=120) == []
    assert post(server, "rp-versions:x/run", {"input": {}}).status_code == 400


def test_the_endpoint_api_needs_the_workspace_token(server, endpoints) -> None:
    assert httpx.post(f"{endpoints}/rp-basic/run", json={"input": {}}).status_code == 401
    other = other_workspace_env(server)["FIREBOX_TOKEN"]
    assert post(server, "rp-basic/runsync", {"input": {}}, token=other).status_code == 404
    job = post(server, "rp-basic/run", {"input": {"text": "mine"}}).json()
    assert httpx.get(f"{endpoints}/rp-basic/status/{job['id']}",
                     headers={"Authorization": f"Bearer {other}"}).status_code == 404
    # A job is only found on its own endpoint.
    assert httpx.get(f"{endpoints}/rp-stream/status/{job['id']}",
                     headers={"Authorization": f"Bearer {server.token}"}).status_code == 404
    bad = post(server, "rp-basic/run", {"inputs": {}})
    assert bad.status_code == 422 and "input" in bad.json()["error"]


def test_deploy_refuses_what_it_cannot_serve(server, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "main.py").write_text("print('no worker here')\n")
    out = server.cli("deploy", str(tmp_path / "empty"))
    assert out.returncode != 0 and "runpod.serverless.start" in out.stderr
    assert "Traceback" not in out.stderr

    (tmp_path / "truss" / "model").mkdir(parents=True)
    (tmp_path / "truss" / "config.yaml").write_text("model_name: t\n")
    out = server.cli("deploy", str(tmp_path / "truss"))
    assert out.returncode != 0 and "has no model/model.py" in out.stderr

    bad = tmp_path / "badtoml"
    bad.mkdir()
    (bad / "handler.py").write_text((PACKAGES / "basic" / "handler.py").read_text())
    (bad / "firebox.toml").write_text("max_container = 2\n")
    out = server.cli("deploy", str(bad))
    assert out.returncode != 0 and "unknown keys max_container" in out.stderr
    (bad / "firebox.toml").unlink()
    out = server.cli("deploy", str(bad), "--handler", "missing.py")
    assert out.returncode != 0 and "No handler file missing.py" in out.stderr


def test_an_accepted_job_survives_a_server_crash(own_server) -> None:
    done = own_server.cli("deploy", str(PACKAGES / "errors"), "--name", "rp-durable",
                          timeout=300)
    assert done.returncode == 0, done.stderr
    old_base = runpod.endpoint_url_base
    runpod.endpoint_url_base = f"{own_server.url}/v2"
    try:
        job = runpod.Endpoint("rp-durable", api_key=own_server.token).run(
            {"mode": "slow", "seconds": 2})
        deadline = time.monotonic() + 60
        while job.status() != "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        own_server.kill()
        own_server.start()
        # The client's job object goes on polling the server that came back.
        assert job.output(timeout=120)["mode"] == "slow"
        assert job.status() == "COMPLETED"
    finally:
        runpod.endpoint_url_base = old_base
