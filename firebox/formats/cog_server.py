"""Inside a container: a Cog package served by Cog's own server, unchanged.

The firebox class CogPredictor's `@enter` hook writes the predictor's OpenAPI schema where
`cog build` would (.cog/openapi_schema.json, in a working directory that links to the package's
files), then runs Cog's server (`python -m cog.server.http`, coglet) on the container's port
5000 and waits for its health check: READY, or SETUP_FAILED (the server then stays up to
say so, and every prediction fails with setup()'s logs). Cog's HTTP API
is then the class's web endpoint (`http`), as it is on a Cog container's port; and `predict` is
one prediction as a firebox input, for the control plane's Replicate API: it PUTs the
prediction to Cog's server asynchronously, with a webhook on the container's loopback, and
yields each state Cog posts (JSON text) until the prediction ends. A cancelled input cancels the
prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ..sdk.partial import enter, exit, method
from ..sdk.web import web_server
from ..wire import settings
from .loopback import Loopback, json_body

REMOTE_DIR = "/src"  # where the package is mounted, as in Cog's images
PORT = 5000  # Cog's server's port in its own containers
SETUP_WAIT = 1800.0  # seconds setup() may take
TERMINAL = ("succeeded", "failed", "canceled")
EVENTS = ["start", "output", "logs", "completed"]
BUSY_RETRIES = 250  # 20 ms apart: how long a prediction waits for a slot Cog has not yet freed


class CogPredictor:
    """A Cog package served by Cog's server: its HTTP API (`http`) and its predictions."""

    @enter()
    def start(self) -> None:
        package = Path(REMOTE_DIR)
        self.ref = settings.COG_PREDICT.required()
        self.work = Path(tempfile.mkdtemp(prefix="cog-"))
        for entry in package.iterdir():
            if entry.name != ".cog":
                (self.work / entry.name).symlink_to(entry)
        (self.work / ".cog").mkdir()
        schema_file = self.work / ".cog" / "openapi_schema.json"
        _write_schema(package, self.ref, schema_file)
        output = json.loads(schema_file.read_text())["components"]["schemas"]["Output"]
        self.streams = output.get("x-cog-array-type") == "iterator"
        bin_dir = str(Path(sys.executable).parent)  # coglet starts its worker as `python`
        env = {**os.environ, "PORT": str(PORT), "COG_PREDICT_TYPE_STUB": self.ref,
               # the slots Cog's server runs at once: cog.yaml's concurrency.max, which is
               # the container's max_inputs too (formats/cog.py)
               "COG_MAX_CONCURRENCY": settings.COG_CONCURRENCY.get() or "1",
               "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.server = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"], cwd=self.work,
            env=env, start_new_session=True)
        self.base = f"http://127.0.0.1:{PORT}"
        self.setup_failed = ""
        self._wait_ready()
        self.waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self.hooks = Loopback(self._webhook, "cog-webhooks")

    @method()
    def schema(self) -> str:
        """The predictor's OpenAPI schema, as JSON text (a Replicate version's openapi_schema)."""
        return (self.work / ".cog" / "openapi_schema.json").read_text()

    def _wait_ready(self) -> None:
        started = time.monotonic()
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"Cog's server exited with code {self.server.returncode} "
                                   "before it was ready; its output is above.")
            try:
                health = httpx.get(f"{self.base}/health-check", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                health = {}
            status = health.get("status")
            if status in ("READY", "BUSY"):
                print(f"firebox: Cog's server is ready in {time.monotonic() - started:.2f} s",
                      flush=True)
                return
            if status == "SETUP_FAILED":
                # As in a Cog container, the server stays up to say so: its health check is
                # SETUP_FAILED (with setup()'s logs), and each prediction fails saying why.
                logs = (health.get("setup") or {}).get("logs") or ""
                self.setup_failed = f"The predictor's setup() failed:\n{logs[-4000:]}"
                print(f"firebox: {self.setup_failed}", flush=True)
                return
            if time.monotonic() - started > SETUP_WAIT:
                raise RuntimeError(f"Cog's server was not ready in {SETUP_WAIT:.0f} s.")
            time.sleep(0.05)

    @web_server(PORT, startup_timeout=60, requires_proxy_auth=True)
    def http(self) -> None:
        """Cog's HTTP API: the server @enter started listens on PORT."""

    def _webhook(self, verb: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        prediction_id = path.rsplit("/", 1)[-1]
        found = self.waiting.get(prediction_id)
        if verb == "POST" and found is not None:
            loop, states = found
            loop.call_soon_threadsafe(states.put_nowait, json_body(body))
        return 200, {}

    @method()
    async def predict(self, prediction_id: str, request: str, meta: str = "") -> Any:
        """Run one prediction; yield each of its states (Cog's prediction JSON) as text. (meta
        is what the Replicate API keeps with the prediction: its model and version.)"""
        if self.setup_failed:
            yield json.dumps({"id": prediction_id, "status": "failed", "logs": "",
                              "error": self.setup_failed})
            return
        body = json.loads(request)
        # An iterator's output comes back as it is made, by Cog's webhooks on the loopback;
        # any other prediction is Cog's synchronous answer (~45 ms sooner than its webhooks).
        streamed = self.streams
        states: asyncio.Queue[Any] = asyncio.Queue()
        if streamed:
            body.update(webhook=f"{self.hooks.url}/hook/{prediction_id}",
                        webhook_events_filter=EVENTS)
            self.waiting[prediction_id] = (asyncio.get_running_loop(), states)
        async with httpx.AsyncClient(base_url=self.base, timeout=None) as client:
            try:
                for _ in range(BUSY_RETRIES):  # Cog frees a slot a moment after it answers
                    reply = await client.put(
                        f"/predictions/{prediction_id}", json={**body, "id": prediction_id},
                        headers={"Prefer": "respond-async"} if streamed else {})
                    if reply.status_code != 409:
                        break
                    await asyncio.sleep(0.02)
                if reply.status_code == 422:
                    yield json.dumps({"id": prediction_id, "status": "failed",
                                      "error": _invalid(reply.json()), "logs": ""})
                    return
                if reply.status_code >= 400:
                    yield json.dumps({"id": prediction_id, "status": "failed", "logs": "",
                                      "error": f"Cog's server answered {reply.status_code}: "
                                               f"{reply.text[:2000]}"})
                    return
                if not streamed:
                    yield reply.text
                    return
                while True:
                    state = await states.get()
                    yield json.dumps(state)
                    if state.get("status") in TERMINAL:
                        return
            except asyncio.CancelledError:
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"/predictions/{prediction_id}/cancel", timeout=10)
                raise
            finally:
                self.waiting.pop(prediction_id, None)

    @exit()
    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGKILL)
        self.hooks.close()


def _write_schema(package: Path, ref: str, out: Path) -> None:
    """The schema, made in a process of its own: it imports the user's predictor module."""
    done = subprocess.run(
        [sys.executable, "-m", "firebox.formats.cog_schema", str(package), ref, str(out)],
        capture_output=True, text=True, cwd=package)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"The predictor {ref} could not be read:\n{done.stderr[-4000:]}")


def _invalid(reply: Any) -> str:
    """Cog's 422 detail list as one line a Replicate prediction's error can hold."""
    details = reply.get("detail") if isinstance(reply, dict) else None
    if not isinstance(details, list):
        return f"The input is not valid: {reply}"
    parts = [f"{'.'.join(str(x) for x in d.get('loc', [])[2:]) or 'input'}: {d.get('msg')}"
             for d in details if isinstance(d, dict)]
    return "The input is not valid: " + "; ".join(parts)
