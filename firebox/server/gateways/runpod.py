"""RunPod's endpoint API under /v2/{endpoint_id}/, so that `runpod.Endpoint(...)` (with
`runpod.endpoint_url_base` at this server's /v2) calls a deployed RunPod worker package.

The endpoint id is the name of the deployed app (`firebox deploy ./worker --name ID`), or
`name:version` for one of its deployed versions. Each job is a durable firebox call of one
input of the app's RunpodWorker class (formats/runpod_worker.py), so it is queued, scaled,
metered and kept across restarts like any call; its id is the call's id. What the worker posts
comes back as the call's yielded values, JSON text that is read here as plain data only.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ... import wire
from ...wire import ids
from ..api.bodies import identity, json_body, plane
from ..api.requests import Body
from ..core import apps, jobs
from ..core.errors import ApiError, invalid, not_found
from ..core.functions import FunctionRecord
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from .outputs import end, events, failure, read_until, send_webhook

WORKER_CLASS = "RunpodWorker"  # the class formats/runpod.py deploys
RUNSYNC_WAIT = 90.0  # seconds /runsync waits, as RunPod's does by default
STREAM_WAIT = 5.0  # seconds /stream waits for a first new item
CURSORS = 10_000  # jobs whose /stream position is remembered
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class RunBody(Body):
    input: Any = Field(...)
    webhook: str | None = Field(default=None, max_length=4096)
    policy: dict[str, Any] | None = None


# ---- the job's state, from its outputs ------------------------------------------------------


def job_state(outputs: list[Any], running: bool, accepted: float) -> dict[str, Any]:
    """RunPod's status document of a job, accepted at `accepted`, from its call's outputs
    (without its id)."""
    found = events(outputs)
    result = next((e for e in reversed(found) if "result" in e), None)
    progress = next((e["progress"] for e in reversed(found) if "progress" in e), None)
    if result is not None:
        body = result["result"] if isinstance(result["result"], dict) else {}
        doc: dict[str, Any] = {"status": "FAILED" if body.get("error") else "COMPLETED"}
        if "output" in body:
            doc["output"] = body["output"]
        if body.get("error"):
            doc["error"] = body["error"]
        started, ended = result.get("started"), result.get("finished")
        if isinstance(started, (int, float)) and isinstance(ended, (int, float)):
            doc["delayTime"] = max(0, round((started - accepted) * 1000))
            doc["executionTime"] = max(0, round((ended - started) * 1000))
        return doc
    ended_as = end(outputs)
    if ended_as is not None:
        status, data = ended_as
        if status == wire.TIMEOUT:
            return {"status": "TIMED_OUT", "error": "The job ran past the endpoint's timeout."}
        if status == wire.CANCELLED:
            return {"status": "CANCELLED"}
        return {"status": "FAILED", "error": failure(
            status, data, "The job failed without a result from the worker.")}
    if running or found:
        doc = {"status": "IN_PROGRESS"}
        if progress is not None:
            doc["output"] = progress
        return doc
    return {"status": "IN_QUEUE"}


def stream_items(outputs: list[Any]) -> list[dict[str, Any]]:
    """The job's streamed outputs, in order, as RunPod's /stream lists them."""
    return [{"output": e["stream"]} for e in events(outputs)
            if "stream" in e and e.get("error") is None]


# ---- the endpoint and its jobs ------------------------------------------------------------


async def endpoint_function(cp: ControlPlane, who: Identity, endpoint_id: str) -> FunctionRecord:
    name, _, version_text = endpoint_id.partition(":")
    version = None
    if version_text:
        if not (version_text.isdigit() and len(version_text) < 10):
            raise invalid(f"'{endpoint_id}' is not an endpoint id: use NAME or NAME:VERSION.")
        version = int(version_text)
    found = await apps.lookup_function(cp, who, WORKER_CLASS, "", name, version)
    fn = await cp.load_function(found["function_id"])
    if fn is None:
        raise not_found(f"Endpoint '{endpoint_id}' cannot be called now; deploy it again.")
    return fn


async def submit(cp: ControlPlane, who: Identity, fn: FunctionRecord, body: RunBody,
                 wait: float) -> dict[str, Any]:
    job_id = ids.new_call_id()
    args = wire.serialize(((job_id, json.dumps(body.input)), {}), "job input")
    await cp.calls.create(who.workspace_id, fn.id, job_id, [(0, args)], kind="spawn",
                          method="run", params=None, wait=0, retried=False)
    if body.webhook:
        _webhook(cp, who, fn, job_id, body.webhook)
    if wait:
        return await status(cp, who, fn, job_id, wait)
    return {"id": job_id, "status": "IN_QUEUE"}


async def _own(cp: ControlPlane, who: Identity, fn: FunctionRecord, job_id: str) -> float:
    """When the job was accepted; NotFound unless it is a job of this endpoint and workspace."""
    found = await jobs.accepted_at(cp.db, job_id)
    if found is None or found[:2] != (who.workspace_id, fn.id):
        raise not_found(f"No job '{job_id}' on this endpoint.")
    return found[2]


async def status(cp: ControlPlane, who: Identity, fn: FunctionRecord, job_id: str,
                 wait: float = 0.0) -> dict[str, Any]:
    """The job's status document, waiting up to `wait` seconds for it to finish."""
    accepted = await _own(cp, who, fn, job_id)

    def state(outputs: list[Any]) -> dict[str, Any]:
        return job_state(outputs, jobs.running(cp.scheduler, job_id), accepted)

    outputs = await read_until(cp, who.workspace_id, job_id,
                               lambda o: state(o)["status"] in FINAL, wait)
    return {"id": job_id, **state(outputs)}


class Cursors:
    """How far each job's /stream has been read: RunPod's /stream answers what is new."""

    def __init__(self) -> None:
        self.read: OrderedDict[str, int] = OrderedDict()

    def take(self, job_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start = self.read.pop(job_id, 0)
        self.read[job_id] = len(items)
        while len(self.read) > CURSORS:
            self.read.popitem(last=False)
        return items[start:]


async def stream(cp: ControlPlane, who: Identity, fn: FunctionRecord, job_id: str,
                 cursors: Cursors) -> dict[str, Any]:
    """What the job streamed since the last /stream, waiting up to STREAM_WAIT for more."""
    accepted = await _own(cp, who, fn, job_id)
    already = cursors.read.get(job_id, 0)

    def state(outputs: list[Any]) -> str:
        return str(job_state(outputs, jobs.running(cp.scheduler, job_id), accepted)["status"])

    outputs = await read_until(
        cp, who.workspace_id, job_id,
        lambda o: state(o) in FINAL or len(stream_items(o)) > already, STREAM_WAIT)
    return {"id": job_id, "status": state(outputs),
            "stream": cursors.take(job_id, stream_items(outputs))}


def _webhook(cp: ControlPlane, who: Identity, fn: FunctionRecord, job_id: str,
             url: str) -> None:
    """POST the job's final status document to url once it has one."""
    async def final() -> dict[str, Any]:
        doc = {"status": "IN_QUEUE"}
        while doc["status"] not in FINAL:
            doc = await status(cp, who, fn, job_id, 60)
        return doc

    send_webhook(url, final, f"job {job_id}")


async def health(cp: ControlPlane, fn: FunctionRecord) -> dict[str, Any]:
    q = jobs.queue(cp.scheduler, fn)
    done = await jobs.finished(cp.db, fn)
    return {
        "jobs": {"completed": done.get(wire.SUCCESS, 0),
                 "failed": done.get(wire.FAILURE, 0) + done.get(wire.TIMEOUT, 0),
                 "inProgress": q.running, "inQueue": q.waiting, "retried": 0},
        "workers": {"idle": q.idle_workers, "running": q.running_workers,
                    "initializing": q.starting_workers},
    }


# ---- routes --------------------------------------------------------------------------------


async def _endpoint(request: Request) -> tuple[ControlPlane, Identity, FunctionRecord]:
    cp, who = plane(request), identity(request)
    return cp, who, await endpoint_function(cp, who, request.path_params["endpoint_id"])


async def run_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    return JSONResponse(await submit(cp, who, fn, await json_body(request, RunBody), 0))


async def runsync_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    wait = RUNSYNC_WAIT
    if "wait" in request.query_params:  # milliseconds, as RunPod takes it
        try:
            wait = min(max(float(request.query_params["wait"]) / 1000, 0.0), 300.0)
        except ValueError:
            raise invalid("wait is milliseconds, a number.") from None
    return JSONResponse(await submit(cp, who, fn, await json_body(request, RunBody), wait))


async def status_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    return JSONResponse(await status(cp, who, fn, request.path_params["job_id"]))


async def stream_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    cursors = getattr(request.app.state, "runpod_cursors", None)
    if cursors is None:
        cursors = request.app.state.runpod_cursors = Cursors()
    return JSONResponse(await stream(cp, who, fn, request.path_params["job_id"], cursors))


async def cancel_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    job_id = request.path_params["job_id"]
    doc = await status(cp, who, fn, job_id)
    if doc["status"] not in FINAL:
        await cp.calls.cancel(who.workspace_id, job_id)
        doc = {"id": job_id, "status": "CANCELLED"}
    return JSONResponse(doc)


async def retry_route(request: Request) -> JSONResponse:
    raise ApiError(400, "InvalidError", "Retrying a finished job by its id is not supported; "
                   "send its input to /run again (a firebox function's retries= retries "
                   "failed inputs by itself).")


async def purge_route(request: Request) -> JSONResponse:
    cp, who, fn = await _endpoint(request)
    removed = 0
    for job_id in jobs.waiting_calls(cp.scheduler, fn):
        removed += await cp.calls.cancel(who.workspace_id, job_id)
    return JSONResponse({"removed": removed, "status": "completed"})


async def health_route(request: Request) -> JSONResponse:
    cp, _who, fn = await _endpoint(request)
    return JSONResponse(await health(cp, fn))


PREFIX = "/v2/{endpoint_id}"
routes = [
    Route(f"{PREFIX}/run", run_route, methods=["POST"]),
    Route(f"{PREFIX}/runsync", runsync_route, methods=["POST"]),
    Route(f"{PREFIX}/status/{{job_id}}", status_route, methods=["GET", "POST"]),
    Route(f"{PREFIX}/stream/{{job_id}}", stream_route, methods=["GET", "POST"]),
    Route(f"{PREFIX}/cancel/{{job_id}}", cancel_route, methods=["POST"]),
    Route(f"{PREFIX}/retry/{{job_id}}", retry_route, methods=["POST"]),
    Route(f"{PREFIX}/purge-queue", purge_route, methods=["POST"]),
    Route(f"{PREFIX}/health", health_route, methods=["GET"]),
]
