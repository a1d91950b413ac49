"""Baseten's model API for deployed Trusses: `POST /model/{name}/production/predict` (and
`/model/{name}/deployment/{version}/predict` for a deployed version) with the body passed to the
model as it is, the way `https://model-ID.api.baseten.co/production/predict` takes it, and
`Authorization: Api-Key <firebox token>` (or Bearer).

Each request is a firebox call of one input of the app's TrussModel.predict
(formats/truss_server.py): queued, scaled from zero and metered like any call. What the
container yields (JSON text: the output, streamed chunks, or the model's error) is read as
plain data only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ... import wire
from ...wire import ids
from ..api.bodies import identity, plane
from ..api.limits import max_json_bytes
from ..core import apps
from ..core.errors import ApiError, invalid
from ..core.plane import ControlPlane
from ..core.workspaces import Identity
from .outputs import end, events, failure

TRUSS_CLASS = "TrussModel"  # the class formats/truss.py deploys
POLL = 30.0


async def _call(cp: ControlPlane, who: Identity, name: str, version: int | None,
                body: bytes) -> str:
    found = await apps.lookup_function(cp, who, TRUSS_CLASS, "", name, version)
    call_id = ids.new_call_id()
    args = wire.serialize(((body.decode(),), {}), "model input")
    await cp.calls.create(who.workspace_id, found["function_id"], call_id, [(0, args)],
                          kind="spawn", method="predict", params=None, wait=0, retried=False)
    return call_id


async def _events(cp: ControlPlane, who: Identity, call_id: str) -> AsyncIterator[dict[str, Any]]:
    """The call's yielded JSON objects as they come, then a final {"error"} if it failed."""
    outputs: list[Any] = []
    seen = 0
    while True:
        after = outputs[-1][0] if outputs else 0
        outputs += (await cp.calls.read(who.workspace_id, call_id, after, POLL))["outputs"]
        found = events(outputs)
        for event in found[seen:]:
            yield event
        seen = len(found)
        ended = end(outputs)
        if ended is not None:
            if ended[0] != wire.SUCCESS:
                yield {"error": failure(*ended, "The model failed without an answer."),
                       "status": 504 if ended[0] == wire.TIMEOUT else 500}
            return


async def predict(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    body = await request.body()
    if len(body) > max_json_bytes():
        raise ApiError(413, "InvalidError", "The request body is larger than the server takes.")
    try:
        json.loads(body or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise invalid("The request body is not valid JSON.") from None
    version_text = request.path_params.get("version")
    if version_text is not None and not (version_text.isdigit() and len(version_text) < 10):
        raise invalid(f"'{version_text}' is not a deployment: give its version number.")
    version = int(version_text) if version_text is not None else None
    call_id = await _call(cp, who, request.path_params["name"], version, body or b"null")
    stream = _events(cp, who, call_id)
    first = await anext(stream)
    if "chunk" in first:
        async def chunks() -> AsyncIterator[bytes]:
            yield first["chunk"].encode()
            async for event in stream:
                if "chunk" in event:
                    yield event["chunk"].encode()
        return StreamingResponse(chunks(), media_type="text/plain",
                                 headers={"X-Firebox-Call-Id": call_id})
    if "error" in first:
        return JSONResponse({"error": first["error"]}, status_code=int(first.get("status", 500)))
    if "status" in first:  # the model returned a Response of its own
        return Response(first.get("output", ""), status_code=int(first["status"]))
    return JSONResponse(first.get("output"), headers={"X-Firebox-Call-Id": call_id})


routes = [
    Route("/model/{name}/production/predict", predict, methods=["POST"]),
    Route("/model/{name}/environments/production/predict", predict, methods=["POST"]),
    Route("/model/{name}/deployment/{version}/predict", predict, methods=["POST"]),
]
