"""The client API: apps, functions, calls and their outputs, blobs and logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ... import wire
from ...store import schema as s
from ...wire import ids as wire_ids
from ...wire.spec import DEFAULTS
from ..core.errors import ApiError, invalid, not_found
from ..core.ownership import check_refs
from ..core.plane import ControlPlane
from ..core.specs import check_options, check_spec
from ..core.web_endpoints import web_entries
from ..core.workspaces import Identity
from . import limits
from . import requests as rq
from .requests import M, validate

LOG_PAGE = 1000  # log lines read from the database at a time


def plane(request: Request) -> ControlPlane:
    return request.app.state.plane  # type: ignore[no-any-return]


def identity(request: Request) -> Identity:
    return request.scope["identity"]  # type: ignore[no-any-return]


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body, checked against model (422 naming the fields at fault)."""
    data = await request.body()
    if len(data) > limits.max_json_bytes():  # it may have come in labelled as msgpack
        raise limits.BodyTooLarge(limits.body_limit({"method": "POST", "path": "",
                                                     "headers": []})[1])
    # Every JSON value but the first follows a ',' or opens with '[' or '{': the count bounds
    # the objects the body can become, cheaply, before it is parsed.
    if data.count(b",") + data.count(b"[") + data.count(b"{") > MAX_ITEMS:
        raise too_many("The request body")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise invalid("The request body is not valid JSON; send a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return validate(model, body)


def check_size(size: int) -> None:
    """Refuse a request body larger than the largest payload plus room for its envelope."""
    if size > wire.max_payload_bytes() + 1024 * 1024:
        raise ApiError(413, "InvalidError", "The request is larger than the server accepts.")


# A body unpacks to many times its size in objects (an empty list is 56 bytes of Python for one
# byte of msgpack): at most this many items in all, so a body's objects stay within ~100 MB.
MAX_ITEMS = 1_000_000


def too_many(what: str) -> ApiError:
    return ApiError(413, "InvalidError", f"{what} holds more than {MAX_ITEMS:,} items; send "
                                         "them in several requests.")


def count_items(data: bytes, limit: int) -> int:
    """How many values a msgpack document holds, counted without building them (scalars are
    skipped in C), stopping once past limit: so a body that would unpack to too many objects is
    refused before a single one exists."""
    reader = msgpack.Unpacker(max_buffer_size=len(data) + 1, max_array_len=limit,
                              max_map_len=limit, max_str_len=len(data), max_bin_len=len(data))
    reader.feed(data)
    pending, seen = 1, 0
    while pending and seen <= limit:
        pending -= 1
        kind = data[reader.tell()]
        if 0x90 <= kind <= 0x9F or kind in (0xDC, 0xDD):  # an array: its items are next
            size = reader.read_array_header()
        elif 0x80 <= kind <= 0x8F or kind in (0xDE, 0xDF):  # a map: its keys and values
            size = 2 * reader.read_map_header()
        else:
            reader.skip()
            continue
        pending += size
        seen += size
    return seen


def unpack_map(data: bytes, what: str = "The request body") -> dict[str, Any]:
    check_size(len(data))
    try:
        if count_items(data, MAX_ITEMS) > MAX_ITEMS:
            raise too_many(what)
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except ApiError:
        raise
    except Exception:
        raise invalid(f"{what} is not valid msgpack.") from None
    if not isinstance(body, dict):
        raise invalid(f"{what} must be a msgpack map.")
    return body


async def msgpack_body(request: Request, model: type[M]) -> M:
    """The request's msgpack body, checked against model (422 naming the fields at fault)."""
    return validate(model, unpack_map(await request.body()))


def query(request: Request, model: type[M]) -> M:
    """The request's query parameters, checked against model."""
    return validate(model, dict(request.query_params), "The query")


def packed(message: Any, status: int = 200) -> Response:
    return Response(wire.pack(message), status_code=status, media_type=wire.MSGPACK)


# ---- apps --------------------------------------------------------------------------------


async def create_app(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateApp)
    cp, who = plane(request), identity(request)
    name, mode = body.name, body.mode
    if mode == "deploy" and not name:
        raise invalid("A deployed app needs a name: App('my-app') or `firebox deploy --name`.")
    now = time.time()
    if mode == "deploy":
        found = await cp.db.read(
            sa.select(s.apps.c.id).where(
                s.apps.c.workspace_id == who.workspace_id,
                s.apps.c.name == name,
                s.apps.c.state == "deployed",
            )
        )
        if found:
            return JSONResponse({"app_id": found[0][0], "created": False})
    app_id = wire_ids.new_app_id()
    state = "deployed" if mode == "deploy" else "ephemeral"
    await cp.db.write(
        lambda conn: conn.execute(
            s.apps.insert().values(
                id=app_id,
                workspace_id=who.workspace_id,
                name=name,
                state=state,
                created_at=now,
                heartbeat_at=now,
            )
        )
    )
    await cp.app_event(app_id, "created", {"mode": mode})
    return JSONResponse({"app_id": app_id, "created": True})


async def app_row(cp: ControlPlane, who: Identity, ref: str) -> sa.Row[Any]:
    """An app of the caller's workspace by id, or the newest one with that name."""
    q = sa.select(s.apps).where(s.apps.c.workspace_id == who.workspace_id)
    if ref.startswith(wire_ids.APP):
        rows = await cp.db.read(q.where(s.apps.c.id == ref))
    else:
        rows = await cp.db.read(
            q.where(s.apps.c.name == ref).order_by(
                (s.apps.c.state == "stopped").asc(), s.apps.c.created_at.desc()
            )
        )
    if not rows:
        raise not_found(f"No app '{ref}' in this workspace; `firebox app list` shows the apps.")
    return rows[0]


async def register_functions(request: Request) -> JSONResponse:
    body = await json_body(request, rq.RegisterFunctions)
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
    if app.state == "stopped":
        raise invalid(f"The app '{app.name or app.id}' is stopped; run or deploy it again.")
    functions: list[tuple[str, dict[str, Any]]] = []
    for f in body.functions:
        name = f.name
        spec = check_spec(name, f.spec)
        problem = cp.scheduler.capacity.never_fits(
            float(spec.get("cpu") or DEFAULTS["cpu"]),
            int(spec.get("memory") or DEFAULTS["memory"]), spec.get("gpu"))
        if problem:
            raise invalid(f"Function '{name}' can never run here: {problem}; ask for less.")
        problem = await cp.resolve_image(who.workspace_id, spec)
        if problem:
            raise invalid(f"Function '{name}' cannot be registered: {problem}.")
        await check_refs(cp, who, f"Function '{name}'", spec)
        functions.append((name, spec))
    existing = {
        r.name: r.id
        for r in await cp.db.read(
            sa.select(s.functions.c.id, s.functions.c.name).where(
                s.functions.c.app_id == app.id, s.functions.c.parent_id.is_(None)
            )
        )
    }
    ids: dict[str, str] = {}
    replaced: list[str] = []
    now = time.time()

    async def op(conn: AsyncConnection) -> None:
        for name, fields in functions:
            spec = json.dumps(fields)
            if name in existing:
                ids[name] = existing[name]
                replaced.append(existing[name])
                await conn.execute(
                    s.functions.update()
                    .where(s.functions.c.id == existing[name])
                    .values(spec=spec, active=True)
                )
            else:
                fid = ids[name] = wire_ids.function_id(app.id, name)
                await conn.execute(
                    s.functions.insert().values(
                        id=fid, app_id=app.id, name=name, spec=spec, active=True, created_at=now
                    )
                )

    await cp.db.write(op)
    for fid in replaced:
        await cp.replace_function(fid)
    web_urls: dict[str, str] = {}
    for name, fid in ids.items():
        fn = await cp.load_function(fid)
        if fn is not None:
            cp.scheduler.ensure_warm(fn)
            cp.schedules.register(fn)
            urls = await cp.web_endpoints.publish(fn, app.name, app.state == "deployed")
            for method, url in urls.items():
                web_urls[name if method is None else f"{name}.{method}"] = url
    if app.state == "deployed":
        tag = {"tag": body.tag} if body.tag else {}
        await cp.app_event(app.id, "deployed", {"functions": sorted(ids), **tag})
    keys = {name: cp.vault.call_key(fid) for name, fid in ids.items()}
    return JSONResponse({"ids": ids, "web_urls": web_urls, "call_keys": keys})


async def heartbeat(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
    now = time.time()
    await cp.db.write(
        lambda conn: conn.execute(
            s.apps.update().where(s.apps.c.id == app.id).values(heartbeat_at=now)
        )
    )
    return JSONResponse({"state": app.state})


async def stop_app(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
    if app.state != "stopped":
        await cp.stop_app(app.id, "stopped by request")
    return JSONResponse({"app_id": app.id, "state": "stopped"})


async def list_apps(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    limit = query(request, rq.ListApps).limit
    rows = await cp.db.read(
        sa.select(s.apps)
        .where(s.apps.c.workspace_id == who.workspace_id)
        .order_by(s.apps.c.created_at.desc())
        .limit(limit)
    )
    counts: dict[str, int] = {}
    for c in cp.scheduler.containers.values():
        counts[c.pool.function.app_id] = counts.get(c.pool.function.app_id, 0) + 1
    fn_rows = await cp.db.read(
        sa.select(s.functions.c.app_id, sa.func.count())
        .where(s.functions.c.parent_id.is_(None),
               s.functions.c.app_id.in_([r.id for r in rows]))
        .group_by(s.functions.c.app_id)
    )
    fn_counts = {r[0]: r[1] for r in fn_rows}
    return JSONResponse(
        {
            "apps": [
                {
                    "app_id": r.id,
                    "name": r.name,
                    "state": r.state,
                    "created_at": r.created_at,
                    "stopped_at": r.stopped_at,
                    "functions": fn_counts.get(r.id, 0),
                    "containers": counts.get(r.id, 0),
                }
                for r in rows
            ]
        }
    )


async def app_history(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
    rows = await cp.db.read(
        sa.select(s.app_events).where(s.app_events.c.app_id == app.id).order_by(s.app_events.c.id)
    )
    return JSONResponse(
        {
            "app_id": app.id,
            "name": app.name,
            "events": [
                {"ts": r.ts, "kind": r.kind, "detail": json.loads(r.detail)} for r in rows
            ],
        }
    )


async def app_logs(request: Request) -> StreamingResponse:
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, request.path_params["app_id"])
    q = query(request, rq.AppLogs)
    follow, after = q.follow in ("1", "true"), q.after
    live_app = app.state != "stopped" or bool(cp.scheduler.containers_of(app.id))

    async def lines() -> AsyncIterator[bytes]:
        queue = cp.logs.follow(app.id) if follow and live_app else None
        last = after
        try:
            # A line emitted just before we began following may still wait for its commit:
            # let it land, so the history below holds it.
            await cp.logs.stored()
            while True:  # page by page, so a long history never sits in memory at once
                page = await cp.logs.history(app.id, after=last, limit=LOG_PAGE)
                for line in page:
                    last = line.id
                    yield (json.dumps(line.to_json()) + "\n").encode()
                if len(page) < LOG_PAGE:
                    break
            if queue is None:
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield b"\n"  # keeps the connection alive; clients skip blank lines
                    continue
                if item is None:
                    return
                if item.id > last:
                    last = item.id
                    yield (json.dumps(item.to_json()) + "\n").encode()
        finally:
            if queue is not None:
                cp.logs.unfollow(app.id, queue)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# ---- functions ---------------------------------------------------------------------------


async def lookup_function(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    q = query(request, rq.LookupFunction)
    name = q.name
    if q.app_id:
        app = await app_row(cp, who, q.app_id)
    else:
        app_name = q.app
        rows = await cp.db.read(
            sa.select(s.apps).where(
                s.apps.c.workspace_id == who.workspace_id,
                s.apps.c.name == app_name,
                s.apps.c.state == "deployed",
            )
        )
        if not rows:
            raise not_found(
                f"No deployed app named '{app_name}'; deploy it with `firebox deploy`."
            )
        app = rows[0]
    rows = await cp.db.read(
        sa.select(s.functions).where(
            s.functions.c.app_id == app.id, s.functions.c.parent_id.is_(None)
        )
    )
    by_name = {r.name: r for r in rows}
    if name not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        raise not_found(
            f"App '{app.name or app.id}' has no function or class '{name}' (it has: {known})."
        )
    row = by_name[name]
    fn = await cp.load_function(row.id)
    if fn is None:
        raise unusable(cp, row.id, name)
    spec = fn.spec
    urls: dict[str | None, str] = {}
    if web_entries(spec):
        for method in web_entries(spec):
            urls[method] = (await cp.web_endpoints.url_for(fn, app.name, app.state == "deployed",
                                                     method))[1]
    return JSONResponse(
        {
            "function_id": row.id,
            "app_id": app.id,
            "kind": spec.get("kind", "function"),
            "is_generator": bool(spec.get("is_generator")),
            "methods": spec.get("methods", {}),
            "parameters": spec.get("parameters", {}),
            "is_async": bool(spec.get("is_async")),
            "web": spec.get("web"),
            "web_url": urls.pop(None, None),
            "method_urls": urls,
            "call_key": cp.vault.call_key(row.id),
        }
    )


def unusable(cp: ControlPlane, function_id: str, name: str) -> ApiError:
    problem = cp.bad_functions.get(function_id, ("", "", "it could not be loaded"))[2]
    return ApiError(409, "InvalidError", f"Function '{name}' cannot be used: its stored spec "
                                         f"is not valid ({problem}); deploy the app again.")


async def create_variant(request: Request) -> JSONResponse:
    body = await json_body(request, rq.CreateVariant)
    cp, who = plane(request), identity(request)
    parent = await cp.load_function(request.path_params["function_id"])
    if parent is None or parent.workspace_id != who.workspace_id:
        raise not_found("No such function.")
    options = check_options({k: v for k, v in body.options.items() if v is not None})
    problem = cp.scheduler.capacity.never_fits(
        float(options.get("cpu", parent.get("cpu"))),
        int(options.get("memory", parent.get("memory"))),
        options.get("gpu", parent.get("gpu")),
    )
    if problem:
        raise invalid(f"This variant of '{parent.name}' can never run here: {problem}.")
    await check_refs(cp, who, f"This variant of '{parent.name}'", options)
    key = json.dumps(options, sort_keys=True)
    fid = wire_ids.function_id(parent.id, key)
    now = time.time()
    await cp.db.write(
        lambda conn: conn.execute(
            cp.db.insert_ignore(s.functions).values(
                id=fid,
                app_id=parent.app_id,
                name=parent.name,
                spec=json.dumps({"options": options}),
                parent_id=parent.id,
                active=True,
                created_at=now,
            )
        )
    )
    return JSONResponse({"function_id": fid, "call_key": cp.vault.call_key(fid)})


routes = [
    Route("/v1/apps", create_app, methods=["POST"]),
    Route("/v1/apps", list_apps, methods=["GET"]),
    Route("/v1/apps/{app_id}/functions", register_functions, methods=["POST"]),
    Route("/v1/apps/{app_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/apps/{app_id}/stop", stop_app, methods=["POST"]),
    Route("/v1/apps/{app_id}/history", app_history, methods=["GET"]),
    Route("/v1/apps/{app_id}/logs", app_logs, methods=["GET"]),
    Route("/v1/functions/lookup", lookup_function, methods=["GET"]),
    Route("/v1/functions/{function_id}/variants", create_variant, methods=["POST"]),
]
