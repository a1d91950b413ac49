"""The image API: build an image (progress and step logs streamed back), list and prune."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ...images.builder import BuildFailed
from ...store import schema as s
from ...wire import ids
from ..core.errors import invalid
from ..core.ownership import owned
from ..core.plane import ControlPlane
from . import requests as rq
from .apps import identity, json_body, plane


def _digests(request: dict[str, Any]) -> list[str]:
    out = []
    for entry in [*(request.get("steps") or []), *(request.get("mounts") or [])]:
        for key in ("files", "python"):
            out += [v[0] for v in (entry.get(key) or {}).values()]
    return out


async def build_image(request: Request) -> StreamingResponse:
    body = (await json_body(request, rq.BuildImage)).model_dump(exclude_none=True)
    cp, who = plane(request), identity(request)
    digests = sorted(set(_digests(body)))
    have = await owned(cp, who.workspace_id, digests)
    if len(have) != len(digests):
        raise invalid("Some of the image's local files were not uploaded; build it again.")
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def emit(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def record(layer: str, info: dict[str, Any]) -> None:
        await cp.db.write(lambda conn: _upsert_layer(conn, layer, info))

    async def run() -> None:
        try:
            built = await cp.images.build(body, emit, record, who.workspace_id)
        except BuildFailed as exc:
            await queue.put({"t": "error", "index": exc.index, "label": exc.label,
                             "log_tail": exc.log_tail})
        except Exception as exc:
            await queue.put({"t": "error", "index": 0, "label": "build",
                             "log_tail": f"{type(exc).__name__}: {exc}"})
        else:
            image_id = ids.image_id(hashlib.sha256(json.dumps(
                [built.layers, built.env, built.workdir], sort_keys=True).encode()
            ).hexdigest()[:24])
            now = time.time()
            await cp.db.write(lambda conn: _upsert_image(conn, image_id, who.workspace_id,
                                                         built, now))
            await queue.put({"t": "done", "image_id": image_id, "layers": built.layers,
                             "env": built.env, "workdir": built.workdir,
                             "built": len(built.built)})
        finally:
            await queue.put(None)

    async def lines() -> AsyncIterator[bytes]:
        # The build goes on if the caller disconnects: its layers are still worth caching.
        task = asyncio.create_task(run())
        cp.image_builds.add(task)
        task.add_done_callback(cp.image_builds.discard)
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), 15)
            except TimeoutError:
                yield b"\n"  # keeps the connection alive through a long step
                continue
            if event is None:
                return
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _upsert_layer(conn: Any, layer: str, info: dict[str, Any]) -> None:
    await conn.execute(s.image_layers.delete().where(s.image_layers.c.id == layer))
    await conn.execute(s.image_layers.insert().values(id=layer, built_at=time.time(), **info))


async def _upsert_image(conn: Any, image_id: str, workspace_id: str,
                        built: Any, now: float) -> None:
    where = sa.and_(s.images.c.id == image_id, s.images.c.workspace_id == workspace_id)
    found = (await conn.execute(sa.select(s.images.c.id).where(where))).first()
    if found:
        await conn.execute(s.images.update().where(where).values(used_at=now))
    else:
        await conn.execute(s.images.insert().values(
            id=image_id, workspace_id=workspace_id, layers=json.dumps(built.layers),
            env=json.dumps(built.env), workdir=built.workdir, created_at=now, used_at=now))


async def _in_use(cp: ControlPlane) -> set[str]:
    """Images named by a function of an app that is not stopped, in any workspace."""
    rows = await cp.db.read(
        sa.select(s.functions.c.spec)
        .join(s.apps, s.apps.c.id == s.functions.c.app_id)
        .where(s.apps.c.state != "stopped", s.functions.c.parent_id.is_(None))
    )
    used = set()
    for r in rows:
        image = json.loads(r.spec).get("image") or {}
        if image.get("image_id"):
            used.add(image["image_id"])
    return used


async def list_images(request: Request) -> JSONResponse:
    cp, who = plane(request), identity(request)
    rows = await cp.db.read(sa.select(s.images).where(s.images.c.workspace_id == who.workspace_id)
                            .order_by(s.images.c.used_at.desc()))
    layer_ids = {lid for r in rows for lid in json.loads(r.layers)}
    layers = {r.id: r for r in await cp.db.read(
        sa.select(s.image_layers).where(s.image_layers.c.id.in_(sorted(layer_ids))))}
    used = await _in_use(cp)
    out = []
    for r in rows:
        ids = json.loads(r.layers)
        out.append({
            "image_id": r.id, "created_at": r.created_at, "used_at": r.used_at,
            "in_use": r.id in used, "workdir": r.workdir, "env": sorted(json.loads(r.env)),
            "layers": [{"id": lid, "label": layers[lid].label if lid in layers else "?",
                        "size_bytes": layers[lid].size_bytes if lid in layers else 0,
                        "present": cp.images.exists(lid)} for lid in ids],
        })
    return JSONResponse({"images": out})


async def prune_images(request: Request) -> JSONResponse:
    """Forget the workspace's images no running or deployed app uses, then delete the layers
    no image of any workspace still names."""
    cp, who = plane(request), identity(request)
    used = await _in_use(cp)
    rows = await cp.db.read(sa.select(s.images.c.id).where(
        s.images.c.workspace_id == who.workspace_id))
    gone = [r.id for r in rows if r.id not in used]
    if gone:
        await cp.db.write(lambda conn: conn.execute(s.images.delete().where(
            s.images.c.workspace_id == who.workspace_id, s.images.c.id.in_(gone))))
    kept = {lid for r in await cp.db.read(sa.select(s.images.c.layers))
            for lid in json.loads(r.layers)}
    all_layers = [r.id for r in await cp.db.read(sa.select(s.image_layers.c.id))]
    dead = [lid for lid in all_layers if lid not in kept]
    freed = 0
    for lid in dead:
        lock = cp.images.locks.get(lid)
        if lock is not None and lock.locked():
            continue  # being built right now
        freed += await asyncio.to_thread(cp.images.remove, lid)
    if dead:
        await cp.db.write(lambda conn: conn.execute(
            s.image_layers.delete().where(s.image_layers.c.id.in_(dead))))
    return JSONResponse({"images": gone, "layers": len(dead), "freed_bytes": freed})


routes = [
    Route("/v1/images/build", build_image, methods=["POST"]),
    Route("/v1/images", list_images, methods=["GET"]),
    Route("/v1/images/prune", prune_images, methods=["POST"]),
]
