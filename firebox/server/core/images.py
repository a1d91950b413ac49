"""A workspace's images: building one (its record and its layers' records kept), listing them
with their layers, and pruning the images no app uses and the layers no image names."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...images.builder import BuildFailed, Built
from ...store import schema as s
from ...wire import build_events, ids
from .errors import invalid
from .ownership import owned

if TYPE_CHECKING:
    from .plane import ControlPlane

# Gets a build's events, the last of them "done" or "error", then None once the build has ended.
Emit = Callable[[dict[str, Any] | None], Awaitable[None]]


def _digests(request: dict[str, Any]) -> list[str]:
    out = []
    for entry in [*(request.get("steps") or []), *(request.get("mounts") or [])]:
        for key in ("files", "python"):
            out += [v[0] for v in (entry.get(key) or {}).values()]
    return out


async def check_uploaded(cp: ControlPlane, workspace_id: str, request: dict[str, Any]) -> None:
    """Refuse a build whose local files this workspace has not uploaded."""
    digests = sorted(set(_digests(request)))
    have = await owned(cp, workspace_id, digests)
    if len(have) != len(digests):
        raise invalid("Some of the image's local files were not uploaded; build it again.")


def start_build(cp: ControlPlane, workspace_id: str, request: dict[str, Any],
                emit: Emit) -> None:
    """Build the image in a task the plane holds: it goes on if the caller goes away, as its
    layers are still worth caching."""
    task = asyncio.create_task(_build(cp, workspace_id, request, emit))
    cp.image_builds.add(task)
    task.add_done_callback(cp.image_builds.discard)


async def _build(cp: ControlPlane, workspace_id: str, request: dict[str, Any],
                 emit: Emit) -> None:
    async def record(layer: str, info: dict[str, Any]) -> None:
        await cp.db.write(lambda conn: _upsert_layer(conn, layer, info))

    try:
        credentials = await _registry_logins(cp, workspace_id, request)
        built = await cp.images.build(request, emit, record, workspace_id, credentials)
    except BuildFailed as exc:
        await emit(build_events.error(exc.index, exc.label, exc.log_tail))
    except Exception as exc:
        await emit(build_events.error(0, "build", f"{type(exc).__name__}: {exc}"))
    else:
        key: list[Any] = [built.layers, built.env, built.workdir]
        if built.config():
            key.append(built.config())
        image_id = ids.image_id(hashlib.sha256(json.dumps(key, sort_keys=True).encode()
                                               ).hexdigest()[:24])
        now = time.time()
        await cp.db.write(lambda conn: _upsert_image(conn, image_id, workspace_id, built, now))
        await emit(build_events.done(image_id, built.layers, built.env, built.workdir,
                                     len(built.built), built.config()))
    finally:
        await emit(None)


async def _registry_logins(cp: ControlPlane, workspace_id: str,
                           request: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """The login of each from_registry step that names a Secret: REGISTRY_USERNAME and
    REGISTRY_PASSWORD, or for Google's registries SERVICE_ACCOUNT_JSON (as Modal reads them).
    Only the workspace's own secrets count."""
    out = {}
    for i, step in enumerate(request.get("steps") or [], 1):
        if step.get("kind") != "registry" or not step.get("secret_id"):
            continue
        await cp.vault.load([step["secret_id"]])
        values = cp.vault.env_for({"secrets": [step["secret_id"]]}, workspace_id)
        if step.get("registry_login") == "gcp":
            if "SERVICE_ACCOUNT_JSON" not in values:
                raise BuildFailed(step.get("label") or "from_registry", i,
                                  "the registry's Secret has no SERVICE_ACCOUNT_JSON")
            out[i] = ("_json_key", values["SERVICE_ACCOUNT_JSON"])
        elif "REGISTRY_USERNAME" in values and "REGISTRY_PASSWORD" in values:
            out[i] = (values["REGISTRY_USERNAME"], values["REGISTRY_PASSWORD"])
        else:
            raise BuildFailed(step.get("label") or "from_registry", i,
                              "the registry's Secret needs REGISTRY_USERNAME and "
                              "REGISTRY_PASSWORD (or it is not a secret of this workspace)")
    return out


async def _upsert_layer(conn: Any, layer: str, info: dict[str, Any]) -> None:
    await conn.execute(s.image_layers.delete().where(s.image_layers.c.id == layer))
    await conn.execute(s.image_layers.insert().values(id=layer, built_at=time.time(), **info))


async def _upsert_image(conn: Any, image_id: str, workspace_id: str,
                        built: Built, now: float) -> None:
    where = sa.and_(s.images.c.id == image_id, s.images.c.workspace_id == workspace_id)
    found = (await conn.execute(sa.select(s.images.c.id).where(where))).first()
    if found:
        await conn.execute(s.images.update().where(where).values(used_at=now))
    else:
        await conn.execute(s.images.insert().values(
            id=image_id, workspace_id=workspace_id, layers=json.dumps(built.layers),
            env=json.dumps(built.env), workdir=built.workdir, created_at=now, used_at=now,
            config=json.dumps(built.config()) if built.config() else None))


async def _in_use(cp: ControlPlane) -> set[str]:
    """Images named by a function of an app that is not stopped, in any workspace, or by a
    running sandbox."""
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
    # and by a running sandbox made from it: pruning it would take its layers from under it
    used.update(sb.spec.image_id for sb in cp.sandboxes.running.values() if sb.spec.image_id)
    return used


async def listing(cp: ControlPlane, workspace_id: str) -> list[dict[str, Any]]:
    """The workspace's images, last used first, each with its layers' labels and sizes."""
    rows = await cp.db.read(sa.select(s.images).where(s.images.c.workspace_id == workspace_id)
                            .order_by(s.images.c.used_at.desc()))
    layer_ids = {lid for r in rows for lid in json.loads(r.layers)}
    layers = {r.id: r for r in await cp.db.read(
        sa.select(s.image_layers).where(s.image_layers.c.id.in_(sorted(layer_ids))))}
    used = await _in_use(cp)
    out = []
    for r in rows:
        out.append({
            "image_id": r.id, "created_at": r.created_at, "used_at": r.used_at,
            "in_use": r.id in used, "workdir": r.workdir, "env": sorted(json.loads(r.env)),
            "layers": [{"id": lid, "label": layers[lid].label if lid in layers else "?",
                        "size_bytes": layers[lid].size_bytes if lid in layers else 0,
                        "present": cp.images.exists(lid)} for lid in json.loads(r.layers)],
        })
    return out


async def prune(cp: ControlPlane, workspace_id: str) -> dict[str, Any]:
    """Forget the workspace's images no running or deployed app uses, then delete the layers
    no image of any workspace still names: the images forgotten, the layers and bytes freed."""
    used = await _in_use(cp)
    rows = await cp.db.read(sa.select(s.images.c.id).where(
        s.images.c.workspace_id == workspace_id))
    gone = [r.id for r in rows if r.id not in used]
    if gone:
        await cp.db.write(lambda conn: conn.execute(s.images.delete().where(
            s.images.c.workspace_id == workspace_id, s.images.c.id.in_(gone))))
    # A sandbox snapshot made from a built image names that image's layers under its own.
    kept = {lid for table in (s.images, s.sandbox_images)
            for r in await cp.db.read(sa.select(table.c.layers)) for lid in json.loads(r.layers)}
    all_layers = [r.id for r in await cp.db.read(sa.select(s.image_layers.c.id))]
    dead = [lid for lid in all_layers if lid not in kept]
    freed = 0
    for lid in dead:
        lock = cp.images.locks.get(lid)
        if lock is not None and lock.locked():
            continue  # being built right now
        freed += await asyncio.to_thread(cp.images.remove, lid)
    freed += await asyncio.to_thread(cp.images.drop_blobs)
    if dead:
        await cp.db.write(lambda conn: conn.execute(
            s.image_layers.delete().where(s.image_layers.c.id.in_(dead))))
    return {"images": gone, "layers": len(dead), "freed_bytes": freed}
