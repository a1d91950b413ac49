"""Replicate's HTTP API for deployed Cog packages, so that `replicate.Client(base_url=...)`
(the official client) runs them: predictions (create, get, list, cancel, `Prefer: wait`,
server-sent event streams, webhooks), models and their versions with their openapi_schema.

A model is a deployed app named `owner/name` (`firebox deploy ./pkg --name owner/name`) whose
class is CogPredictor (formats/cog_server.py); each deploy is a version, with an id of 64 hex
digits made from the app's id and version number (`firebox app history` lists the versions). A
prediction is a durable firebox call of one input of CogPredictor.predict, by the id it returns;
what the container yields (Cog's prediction states, JSON text) is read as plain data only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ... import wire
from ...wire import ids
from ..api.bodies import identity, json_body, plane
from ..api.requests import Body
from ..core import apps, jobs
from ..core.errors import invalid, not_found
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from .outputs import end, events, failure, read_until, send_webhook

COG_CLASS = "CogPredictor"  # the class formats/cog.py deploys
TERMINAL = ("succeeded", "failed", "canceled")
WAIT_DEFAULT = 60.0  # seconds `Prefer: wait` holds a create, as Replicate's does
WAIT_MOST = 60.0
STREAM_POLL = 30.0
SCHEMA_WAIT = 600.0  # seconds a version's schema may take: its container's start
Event = Literal["start", "output", "logs", "completed"]


class CreatePrediction(Body):
    version: str | None = Field(default=None, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = Field(default=None, max_length=4096)
    webhook_completed: str | None = Field(default=None, max_length=4096)
    webhook_events_filter: list[Event] | None = None
    stream: bool | None = None


# ---- models and versions --------------------------------------------------------------------


def version_id(app_id: str, version: int) -> str:
    """A version's id: 64 hex digits, the app's id and the version's number first."""
    digest = hashlib.sha256(f"{app_id}:{version}".encode()).hexdigest()
    return (app_id.removeprefix(ids.APP) + f"{version:08x}" + digest)[:64]


def parse_version_id(text: str) -> tuple[str, int] | None:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        return None
    app_id, version = ids.APP + text[:16], int(text[16:24], 16)
    return (app_id, version) if version_id(app_id, version) == text else None


async def model_app(cp: ControlPlane, who: Identity, owner: str, name: str) -> Any:
    app = await apps.app_row(cp, who, f"{owner}/{name}")
    if app.state != "deployed":
        raise not_found(f"Model {owner}/{name} is not deployed; `firebox deploy` it.")
    return app


async def current_version(cp: ControlPlane, app: Any) -> int:
    known = await apps.versions(cp, app)
    if not known:
        raise not_found(f"Model {app.name} has no deployed version.")
    return int(known[-1]["version"])


async def resolve(cp: ControlPlane, who: Identity, ref: str) -> tuple[Any, int]:
    """(app, version) of a version id, or of `owner/name:version` or `owner/name`."""
    parsed = parse_version_id(ref)
    if parsed is not None:
        app = await apps.app_row(cp, who, parsed[0])
        return app, parsed[1]
    model, _, version = ref.partition(":")
    owner, _, name = model.partition("/")
    if not owner or not name:
        raise invalid(f"'{ref}' is not a version: give its id, or owner/name[:version].")
    app = await model_app(cp, who, owner, name)
    if not version:
        return app, await current_version(cp, app)
    found = parse_version_id(version)
    if found is not None and found[0] == app.id:
        return app, found[1]
    if version.isdigit() and len(version) < 10:
        return app, int(version)
    raise not_found(f"Model {model} has no version '{version}'.")


async def function_id(cp: ControlPlane, who: Identity, app: Any, version: int) -> str:
    pinned = None if version == await current_version(cp, app) else version
    found = await apps.lookup_function(cp, who, COG_CLASS, app.id, "", pinned)
    return str(found["function_id"])


_schemas: dict[str, Any] = {}


async def schema(cp: ControlPlane, who: Identity, fn_id: str) -> Any:
    """The version's OpenAPI schema, which its container writes (and this remembers)."""
    if fn_id not in _schemas:
        call_id = ids.new_call_id()
        args = wire.serialize(((), {}), "arguments")
        await cp.calls.create(who.workspace_id, fn_id, call_id, [(0, args)], kind="spawn",
                              method="schema", params=None, wait=0, retried=False)
        outputs = await read_until(cp, who.workspace_id, call_id,
                                   lambda o: end(o) is not None, SCHEMA_WAIT)
        ended = end(outputs)
        if ended is None or ended[0] != wire.SUCCESS:
            return None  # a version whose container cannot start has no schema to show
        _schemas[fn_id] = json.loads(wire.deserialize_plain(ended[1] or b"", "schema"))
    return _schemas[fn_id]


async def version_doc(cp: ControlPlane, who: Identity, app: Any, version: int,
                      created_at: float) -> dict[str, Any]:
    fn_id = await function_id(cp, who, app, version)
    return {"id": version_id(app.id, version), "created_at": _iso(created_at),
            "cog_version": "0.23.1", "openapi_schema": await schema(cp, who, fn_id)}


async def model_doc(cp: ControlPlane, who: Identity, app: Any, base: str) -> dict[str, Any]:
    owner, _, name = app.name.partition("/")
    known = await apps.versions(cp, app)
    latest = (await version_doc(cp, who, app, known[-1]["version"], known[-1]["created_at"])
              if known else None)
    return {"url": f"{base}v1/models/{app.name}", "owner": owner, "name": name,
            "description": None, "visibility": "private", "github_url": None,
            "paper_url": None, "license_url": None, "run_count": 0, "cover_image_url": None,
            "default_example": None, "latest_version": latest}


# ---- predictions ----------------------------------------------------------------------------


async def create(cp: ControlPlane, who: Identity, app: Any, version: int,
                 body: CreatePrediction, wait: float, base: str) -> dict[str, Any]:
    fn_id = await function_id(cp, who, app, version)
    prediction_id = ids.new_call_id()
    meta = {"model": app.name, "version": version_id(app.id, version),
            "created_at": _iso(time.time()), "stream": bool(body.stream)}
    args = wire.serialize(((prediction_id, json.dumps({"input": body.input}),
                            json.dumps(meta)), {}), "prediction input")
    await cp.calls.create(who.workspace_id, fn_id, prediction_id, [(0, args)], kind="spawn",
                          method="predict", params=None, wait=0, retried=False)
    hook = body.webhook or body.webhook_completed
    if hook:
        _webhook(cp, who, prediction_id, hook, base)
    return await prediction(cp, who, prediction_id, base, wait)


async def _parts(cp: ControlPlane, who: Identity, prediction_id: str
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request, meta) of a prediction; NotFound unless the workspace made it."""
    await cp.calls.check_owner(who.workspace_id, prediction_id)
    data = await jobs.arguments(cp.db, prediction_id)
    try:
        (_id, request, meta), _kwargs = wire.deserialize_plain(data or b"", "prediction")
        return json.loads(request), json.loads(meta)
    except (ValueError, TypeError, wire.DeserializationError):
        raise not_found(f"No prediction '{prediction_id}'.") from None


async def prediction(cp: ControlPlane, who: Identity, prediction_id: str, base: str,
                     wait: float = 0.0) -> dict[str, Any]:
    """The prediction in Replicate's shape, waiting up to `wait` seconds for it to end."""
    request, meta = await _parts(cp, who, prediction_id)

    def doc(outputs: list[Any]) -> dict[str, Any]:
        return _doc(prediction_id, request, meta, outputs, base)

    outputs = await read_until(cp, who.workspace_id, prediction_id,
                               lambda o: doc(o)["status"] in TERMINAL, wait)
    return doc(outputs)


def _doc(prediction_id: str, request: dict[str, Any], meta: dict[str, Any],
         outputs: list[Any], base: str) -> dict[str, Any]:
    states = events(outputs)
    state = states[-1] if states else {}
    status = state.get("status") or "starting"
    error = state.get("error")
    ended = end(outputs)
    if ended is not None and status not in TERMINAL:
        if ended[0] == wire.CANCELLED:
            status = "canceled"
        else:
            status = "failed"
            error = ("The prediction ran past the model's timeout." if ended[0] == wire.TIMEOUT
                     else failure(*ended, "The prediction failed without a result."))
    urls = {"get": f"{base}v1/predictions/{prediction_id}",
            "cancel": f"{base}v1/predictions/{prediction_id}/cancel",
            "web": f"{base}v1/predictions/{prediction_id}"}
    if meta.get("stream"):
        urls["stream"] = f"{base}v1/predictions/{prediction_id}/stream"
    return {
        "id": prediction_id, "model": meta.get("model"), "version": meta.get("version"),
        "input": request.get("input"), "logs": state.get("logs") or "",
        "output": state.get("output"), "data_removed": False, "error": error,
        "status": status, "source": "api", "created_at": meta.get("created_at"),
        "started_at": state.get("started_at"), "completed_at": state.get("completed_at"),
        "metrics": state.get("metrics") or {}, "urls": urls,
    }


def _webhook(cp: ControlPlane, who: Identity, prediction_id: str, url: str, base: str) -> None:
    """POST the prediction to url once it has ended."""
    async def final() -> dict[str, Any]:
        doc: dict[str, Any] = {"status": "starting"}
        while doc["status"] not in TERMINAL:
            doc = await prediction(cp, who, prediction_id, base, 60)
        return doc

    send_webhook(url, final, f"prediction {prediction_id}")


async def stream_events(cp: ControlPlane, who: Identity, prediction_id: str
                        ) -> AsyncIterator[str]:
    """Replicate's server-sent events of a prediction: output (each new item of an iterator's
    output, or the whole output), logs, error, then done."""
    request, meta = await _parts(cp, who, prediction_id)
    outputs: list[Any] = []
    sent_items, sent_logs, number = 0, 0, 0
    while True:
        after = outputs[-1][0] if outputs else 0
        outputs += (await cp.calls.read(who.workspace_id, prediction_id, after,
                                        STREAM_POLL))["outputs"]
        doc = _doc(prediction_id, request, meta, outputs, "")
        logs = doc["logs"]
        if len(logs) > sent_logs:
            number += 1
            yield _sse("logs", logs[sent_logs:], number)
            sent_logs = len(logs)
        out = doc["output"]
        items = out if isinstance(out, list) else ([out] if out is not None and
                                                    doc["status"] == "succeeded" else [])
        for item in items[sent_items:]:
            number += 1
            yield _sse("output", item if isinstance(item, str) else json.dumps(item), number)
        sent_items = len(items)
        if doc["status"] in TERMINAL:
            if doc["status"] == "failed":
                number += 1
                yield _sse("error", json.dumps({"detail": doc["error"]}), number)
            yield _sse("done", json.dumps({"reason": "canceled"} if doc["status"] == "canceled"
                                          else {}), number + 1)
            return


def _sse(event: str, data: str, number: int) -> str:
    lines = "".join(f"data: {line}\n" for line in (data.split("\n") or [""]))
    return f"event: {event}\nid: {number}\n{lines}\n"


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace(
        "+00:00", "Z")


def _wait(request: Request) -> float:
    """`Prefer: wait` or `Prefer: wait=N` (seconds, at most 60): how long a create waits."""
    prefer = request.headers.get("prefer", "")
    match = re.search(r"\bwait(?:=(\d+))?", prefer)
    if match is None:
        return 0.0
    return min(float(match.group(1)), WAIT_MOST) if match.group(1) else WAIT_DEFAULT


# ---- routes --------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url)


async def create_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    body = await json_body(request, CreatePrediction)
    if not body.version:
        raise invalid("A prediction needs a version: its id, or owner/name[:version].")
    app, version = await resolve(cp, who, body.version)
    doc = await create(cp, who, app, version, body, _wait(request), _base(request))
    return JSONResponse(doc, status_code=201)


async def model_create_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    body = await json_body(request, CreatePrediction)
    app = await model_app(cp, who, request.path_params["owner"], request.path_params["name"])
    doc = await create(cp, who, app, await current_version(cp, app), body, _wait(request),
                       _base(request))
    return JSONResponse(doc, status_code=201)


async def get_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    return JSONResponse(await prediction(cp, who, request.path_params["id"], _base(request)))


async def cancel_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    prediction_id = request.path_params["id"]
    doc = await prediction(cp, who, prediction_id, _base(request))
    if doc["status"] not in TERMINAL:
        await cp.calls.cancel(who.workspace_id, prediction_id)
        doc = await prediction(cp, who, prediction_id, _base(request))
    return JSONResponse(doc)


async def list_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    found = await jobs.recent_calls(cp.db, who.workspace_id, COG_CLASS, "predict", 100)
    results = [await prediction(cp, who, pid, _base(request)) for pid in found]
    return JSONResponse({"next": None, "previous": None, "results": results})


async def stream_route(request: Request) -> StreamingResponse:
    cp, who = plane(request), identity(request)
    prediction_id = request.path_params["id"]
    await _parts(cp, who, prediction_id)  # a 404 before the stream starts
    return StreamingResponse(stream_events(cp, who, prediction_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


async def model_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await model_app(cp, who, request.path_params["owner"], request.path_params["name"])
    return JSONResponse(await model_doc(cp, who, app, _base(request)))


async def versions_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await model_app(cp, who, request.path_params["owner"], request.path_params["name"])
    known = await apps.versions(cp, app)
    results = [await version_doc(cp, who, app, v["version"], v["created_at"])
               for v in reversed(known)]
    return JSONResponse({"next": None, "previous": None, "results": results})


async def version_route(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    owner, name = request.path_params["owner"], request.path_params["name"]
    app, version = await resolve(cp, who, f"{owner}/{name}:{request.path_params['version']}")
    known = {v["version"]: v for v in await apps.versions(cp, app)}
    if version not in known:
        raise not_found(f"Model {owner}/{name} has no version {request.path_params['version']}.")
    return JSONResponse(await version_doc(cp, who, app, version, known[version]["created_at"]))


routes = [
    Route("/v1/predictions", create_route, methods=["POST"]),
    Route("/v1/predictions", list_route, methods=["GET"]),
    Route("/v1/predictions/{id}", get_route, methods=["GET"]),
    Route("/v1/predictions/{id}/cancel", cancel_route, methods=["POST"]),
    Route("/v1/predictions/{id}/stream", stream_route, methods=["GET"]),
    Route("/v1/models/{owner}/{name}", model_route, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/predictions", model_create_route, methods=["POST"]),
    Route("/v1/models/{owner}/{name}/versions", versions_route, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/versions/{version}", version_route, methods=["GET"]),
]
