"""Inside a container: an unmodified RunPod worker takes its jobs from firebox by RunPod's own
worker protocol.

The container's runtime serves a firebox class, RunpodWorker. Its `@enter` hook starts a small
HTTP server on the container's loopback that answers the worker API RunPod's SDK polls (job-take,
job-take-batch, job-done, job-stream, job-stop, ping), then runs the package's handler file as
it is, with RUNPOD_WEBHOOK_GET_JOB and the rest pointing at that server. Each firebox input is
one job: `run()` hands it to the worker's next job-take and yields what the worker posts back,
as JSON text, until its result: stream items, progress updates, then the result. A cancelled
input becomes the job's stop signal; a worker that exits (a crash, or `refresh_worker`) fails
the jobs it held and is started again for the next one.

The control plane reads the yielded values as JSON only (server/gateways/runpod.py), never as
pickled objects: a container's output is untrusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..sdk.partial import enter, exit, method
from ..wire import settings
from .loopback import Loopback, json_body

LONG_POLL = 20.0  # seconds a job-take or job-stop request is held before a 204
READY_WAIT = 600.0  # seconds a worker may take from its start to its first job-take
STOP_GRACE = 5.0  # seconds a worker has to exit after SIGTERM
# Set so that the SDK never dials out at start (it checks an outside DNS server otherwise).
OFFLINE = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}


class JobFailed(Exception):
    """The worker failed the job (its handler raised or returned an error), or exited."""


class Job:
    """One job between its take and its result: what the worker posted for it, in order."""

    def __init__(self, job_id: str, payload: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.id = job_id
        self.payload = payload
        self.loop = loop
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.taken: float | None = None  # when the worker took it

    def post(self, event: dict[str, Any]) -> None:
        """From a server thread: pass an event on to the input that waits for it."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class JobServer:
    """RunPod's worker API on 127.0.0.1: jobs wait in `offered` for a job-take; what the worker
    posts goes to the Job it names. Its handlers run in threads of their own."""

    def __init__(self) -> None:
        self.offered: queue.Queue[Job] = queue.Queue()
        self.stops: queue.Queue[str] = queue.Queue()
        self.jobs: dict[str, Job] = {}
        self.key = secrets.token_hex(16)
        self.polled = threading.Event()  # the current worker asked for a job
        self.worker = ""  # the current worker's id: only it is handed jobs
        self.loopback = Loopback(self.handle, "runpod-jobs")
        self.port = self.loopback.port

    def worker_env(self, worker_id: str) -> dict[str, str]:
        """The variables by which the worker finds this server (`$ID` is the SDK's to fill),
        and from now on the worker that is handed jobs."""
        self.worker = worker_id
        self.polled.clear()
        base = f"http://127.0.0.1:{self.port}"
        return {
            "RUNPOD_DEBUG_LEVEL": os.environ.get("RUNPOD_DEBUG_LEVEL", "INFO"),
            **OFFLINE,
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?worker=1",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?worker=1",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?worker=1",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?worker=1",
            "RUNPOD_AI_API_KEY": self.key,
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_POD_HOSTNAME": worker_id,
        }

    def offer(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.offered.put(job)

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def close(self) -> None:
        self.loopback.close()

    # ---- the worker API ------------------------------------------------------------------------

    def handle(self, verb: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        if headers.get("Authorization", "") != self.key:
            return 401, {"error": "unauthorized"}
        url = urlsplit(path)
        parts = [p for p in url.path.split("/") if p]
        kind = parts[0] if parts else ""
        if verb == "GET" and kind in ("job-take", "job-take-batch") and len(parts) >= 2:
            size = int(parse_qs(url.query).get("batch_size", ["1"])[0])
            jobs = self._take(parts[1], max(1, size))
            if not jobs:
                return 204, None
            if kind == "job-take":
                return 200, _job_json(jobs[0])
            return 200, [_job_json(j) for j in jobs]
        if verb == "GET" and kind == "job-stop":
            return self._stops()
        if verb == "POST" and kind in ("job-done", "job-stream") and len(parts) >= 3:
            job = self.jobs.get(parts[2])
            if job is not None:
                job.post({"kind": kind, "data": json_body(body)})
            return 200, {}
        if kind == "ping":
            return 200, {}
        return 404, {"error": f"no route {verb} {url.path}"}

    def _take(self, worker: str, size: int) -> list[Job]:
        """Up to size jobs for worker, after waiting up to LONG_POLL for one; none for a worker
        that was replaced (it is on its way out: refresh_worker)."""
        if worker != self.worker:
            return []
        self.polled.set()
        try:
            first = self.offered.get(timeout=LONG_POLL)
        except queue.Empty:
            return []
        if worker != self.worker:  # replaced while it waited: the job is the next worker's
            self.offered.put(first)
            return []
        jobs = [first]
        while len(jobs) < size:
            try:
                jobs.append(self.offered.get_nowait())
            except queue.Empty:
                break
        jobs = [j for j in jobs if j.id in self.jobs]  # a job cancelled while offered is gone
        for job in jobs:
            job.taken = time.time()
        return jobs

    def _stops(self) -> tuple[int, Any]:
        try:
            ids = [self.stops.get(timeout=LONG_POLL)]
        except queue.Empty:
            return 204, None
        while True:
            try:
                ids.append(self.stops.get_nowait())
            except queue.Empty:
                return 200, {"jobsToStop": ids}


def _job_json(job: Job) -> dict[str, Any]:
    return {"id": job.id, "input": job.payload}


class RunpodWorker:
    """A RunPod worker package, served as a firebox class: `run(job_id, input)` is one job."""

    @enter()
    def start(self) -> None:
        self.handler = Path(settings.RUNPOD_HANDLER.required())
        self.server = JobServer()
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.started = 0  # workers started so far
        self._start_worker()

    def _start_worker(self) -> None:
        """Run the handler file as the worker, and wait for its first job-take."""
        self.started += 1
        worker_id = f"{settings.CONTAINER_ID.get() or 'local'}-{self.started}"
        env = {**os.environ, **self.server.worker_env(worker_id)}
        started = time.monotonic()
        self.process = process = subprocess.Popen(
            [sys.executable, str(self.handler)], cwd=self.handler.parent, env=env,
            start_new_session=True)
        while not self.server.polled.wait(0.05):
            if process.poll() is not None:
                raise RuntimeError(
                    f"The RunPod worker {self.handler.name} exited with code {process.returncode} "
                    "before it asked for a job: its output above says why (an import that "
                    "failed, or runpod.serverless.start never called).")
            if time.monotonic() - started > READY_WAIT:
                raise RuntimeError(f"The RunPod worker {self.handler.name} asked for no job in "
                                   f"{READY_WAIT:.0f} s of its start.")
        print(f"firebox: the RunPod worker {self.handler.name} is ready in "
              f"{time.monotonic() - started:.2f} s", flush=True)

    def _ensure_worker(self) -> subprocess.Popen[bytes]:
        with self.lock:  # inputs running at once start one new worker, not several
            if self.process is None or self.process.poll() is not None:
                self._start_worker()
            assert self.process is not None
            return self.process

    @method()
    async def run(self, job_id: str, payload: str) -> Any:
        """Hand one job to the worker; yield, as JSON text, each thing it posts for the job:
        {"stream": output}, {"progress": output}, then {"result": {...}, "started", "finished"}."""
        loop = asyncio.get_running_loop()
        process = await asyncio.to_thread(self._ensure_worker)
        job = Job(job_id, json.loads(payload), loop)
        self.server.offer(job)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(job.events.get(), 0.5)
                except asyncio.TimeoutError:
                    if process.poll() is not None and job.taken is None:
                        process = await asyncio.to_thread(self._ensure_worker)  # a new one
                    elif process.poll() is not None:
                        error = (f"The RunPod worker exited with code {process.returncode} "
                                 "while it ran the job; its output is in the app's logs.")
                        yield json.dumps({"result": {"error": error}, "started": job.taken,
                                          "finished": time.time()})
                        raise JobFailed(error)
                    continue
                data = event["data"] if isinstance(event["data"], dict) else {
                    "output": event["data"]}
                if event["kind"] == "job-stream":
                    yield json.dumps({"stream": data.get("output"), "error": data.get("error")})
                elif data.get("status") == "IN_PROGRESS":
                    yield json.dumps({"progress": data.get("output")})
                else:
                    if data.pop("stopPod", False):  # refresh_worker: this worker is done
                        self._retire(process)
                    yield json.dumps({"result": data, "started": job.taken,
                                      "finished": time.time()})
                    if data.get("error"):
                        raise JobFailed(str(data["error"]))
                    return
        except asyncio.CancelledError:
            self.server.stops.put(job_id)
            raise
        finally:
            self.server.forget(job_id)

    def _retire(self, process: subprocess.Popen[bytes]) -> None:
        """The worker stops after its job (refresh_worker): hand it no more jobs, see that it
        ends, and start a new one for the next job."""
        with self.lock:
            if self.process is process:
                self.process = None
                self.server.worker = ""
        threading.Thread(target=_end, args=(process, STOP_GRACE), daemon=True).start()

    @exit()
    def stop(self) -> None:
        if self.process is not None:
            _end(self.process, 0)
        self.server.close()


def _end(process: subprocess.Popen[bytes], grace: float) -> None:
    """End a worker: after grace seconds to exit by itself, SIGTERM, then SIGKILL."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)
