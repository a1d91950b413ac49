"""The Sandbox API. Commands' output streams to clients over HTTP: a chunked response of
length-prefixed msgpack frames ({"fd", "data"} then {"exit"}), resumable with ?after=N; stdin
goes in with POSTs, in order. Everything else is one msgpack request and response."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...store import schema as s
from ...wire import ids
from ...wire.sandbox import frame
from ..core import tunnels
from ..core.errors import invalid, not_found
from ..core.objects import check_name
from ..core.ownership import check_secrets
from ..core.sandbox_volumes import check_mount_path
from ..core.sandboxes import MAX_TIMEOUT, Exec, Sandbox, SandboxManager, Spec, check_allowlist
from ..core.volumes import VOLUMES
from . import requests as rq
from .apps import app_row, identity, msgpack_body, packed, plane, query
from .requests import MAX_WAIT


def manager(request: Request) -> SandboxManager:
    return plane(request).sandboxes  # type: ignore[no-any-return]


def running(request: Request) -> Sandbox:
    sb = manager(request).running.get(request.path_params["sandbox_id"])
    if sb is None or sb.workspace_id != identity(request).workspace_id:
        raise not_found(f"No sandbox {request.path_params['sandbox_id']} is running here; "
                        "Sandbox.list() shows the running ones.")
    return sb


async def _secret_env(request: Request, ids: list[str]) -> dict[str, str]:
    cp, who = plane(request), identity(request)
    await check_secrets(cp, who, "The sandbox", ids)
    await cp.vault.load(ids)
    return cp.vault.env_for({"secrets": ids}, who.workspace_id)


def _seconds(value: float | None, what: str, default: float | None) -> float | None:
    if value is None:
        return default
    if not 0 < value <= MAX_TIMEOUT:
        raise invalid(f"{what} must be a number of seconds between 0 and {MAX_TIMEOUT}.")
    return float(value)


async def create(request: Request) -> Response:
    body = await msgpack_body(request, rq.CreateSandbox)
    cp, who = plane(request), identity(request)
    app = await app_row(cp, who, body.app_id)
    if app.state == "stopped":
        raise invalid(f"App {app.id} has stopped; sandboxes need a running app.")
    if body.name is not None:
        check_name("sandbox", body.name)
    layers: list[str] = []
    if body.image:
        rows = await cp.db.read(sa.select(s.sandbox_images).where(
            s.sandbox_images.c.id == body.image,
            s.sandbox_images.c.workspace_id == who.workspace_id))
        if not rows:
            raise not_found(f"No sandbox image {body.image} in this workspace.")
        layers = json.loads(rows[0].layers)
    env = dict(body.env) | await _secret_env(request, body.secrets)
    if body.workdir is not None and not body.workdir.startswith("/"):
        raise invalid("workdir= must be an absolute path.")
    volumes = {check_mount_path(path): await VOLUMES.resolve(cp, who, ref)
               for path, ref in body.volumes.items()}
    try:
        ports = tunnels.check_ports(body.encrypted_ports, body.unencrypted_ports)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if ports and body.block_network:
        raise invalid("Tunnels need the sandbox on a network of its own: drop "
                      "block_network=True (egress stays closed unless cidr_allowlist= opens it).")
    network = None
    allowlist = body.cidr_allowlist
    if (allowlist or ports) and not body.block_network:
        try:
            network = check_allowlist(allowlist or [])
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if not manager(request).networks:
            raise invalid("cidr_allowlist= and tunnels need nftables and iproute2 on the server "
                          "(scripts/install.sh installs them); leave them out for no network.")
    spec = Spec(args=body.args, env=env, workdir=body.workdir,
                timeout=_seconds(body.timeout, "timeout", 300.0) or 300.0,
                idle_timeout=_seconds(body.idle_timeout, "idle_timeout", None),
                cpu=body.cpu, memory_mb=body.memory, layers=layers,
                volumes=volumes, network=network, ports=ports, pty=body.pty)
    sb = await manager(request).create(who.workspace_id, app.id, body.name, dict(body.tags), spec)
    return packed({"id": sb.id, "isolation": sb.isolation})


def _info(row: Any) -> dict[str, Any]:
    return {"id": row.id, "app_id": row.app_id, "name": row.name, "tags": json.loads(row.tags),
            "isolation": row.isolation, "status": row.status, "returncode": row.returncode,
            "created_at": row.created_at, "finished_at": row.finished_at}


async def _row(request: Request, sandbox_id: str) -> Any:
    rows = await plane(request).db.read(sa.select(s.sandboxes).where(
        s.sandboxes.c.id == sandbox_id,
        s.sandboxes.c.workspace_id == identity(request).workspace_id))
    if not rows:
        raise not_found(f"No sandbox {sandbox_id} in this workspace.")
    return rows[0]


async def get(request: Request) -> Response:
    return packed(_info(await _row(request, request.path_params["sandbox_id"])))


async def wait(request: Request) -> Response:
    """The sandbox's state once it has ended, or after `timeout` seconds (at most 50)."""
    body = await msgpack_body(request, rq.SandboxWait)
    sid = request.path_params["sandbox_id"]
    row = await _row(request, sid)
    sb = manager(request).running.get(sid)
    if row.status == "running" and sb is not None:
        limit = min(MAX_WAIT if body.timeout is None else body.timeout, MAX_WAIT)
        try:
            await asyncio.wait_for(sb.done.wait(), limit)
        except asyncio.TimeoutError:
            pass
        row = await _row(request, sid)
    return packed(_info(row))


async def list_sandboxes(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    q = sa.select(s.sandboxes).where(s.sandboxes.c.workspace_id == who.workspace_id,
                                     s.sandboxes.c.status == "running")
    app_id = query(request, rq.ListSandboxes).app_id
    if app_id:
        q = q.where(s.sandboxes.c.app_id == app_id)
    wanted = dict(t.split("=", 1) for t in request.query_params.getlist("tag") if "=" in t)
    rows = await cp.db.read(q.order_by(s.sandboxes.c.created_at))
    found = [_info(r) for r in rows]
    return packed({"sandboxes": [i for i in found
                                 if all(i["tags"].get(k) == v for k, v in wanted.items())]})


async def lookup(request: Request) -> Response:
    cp, who = plane(request), identity(request)
    q = query(request, rq.LookupSandbox)
    app = await app_row(cp, who, q.app)
    name = q.name
    rows = await cp.db.read(sa.select(s.sandboxes).where(
        s.sandboxes.c.app_id == app.id, s.sandboxes.c.name == name,
        s.sandboxes.c.status == "running"))
    if not rows:
        raise not_found(f"No running sandbox named '{name}' in app '{app.name or app.id}'.")
    return packed(_info(rows[0]))


async def terminate(request: Request) -> Response:
    sid = request.path_params["sandbox_id"]
    await _row(request, sid)
    sb = manager(request).running.get(sid)
    if sb is not None:
        await manager(request).terminate(sb, "terminated")
    return packed(_info(await _row(request, sid)))


async def set_tags(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxTags)
    sid = request.path_params["sandbox_id"]
    await _row(request, sid)
    tags = json.dumps(body.tags)
    await plane(request).db.write(lambda conn: conn.execute(
        s.sandboxes.update().where(s.sandboxes.c.id == sid).values(tags=tags)))
    return packed({})


async def exec_command(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxExec)
    sb = running(request)
    env = dict(body.env) | await _secret_env(request, body.secrets)
    if body.workdir is not None and not body.workdir.startswith("/"):
        raise invalid("workdir= must be an absolute path.")
    size = list(body.pty_size) if body.pty_size else None  # (rows, columns) of the terminal
    e = manager(request).exec(sb, body.args, env, body.workdir,
                              _seconds(body.timeout, "timeout", None), pty=body.pty, size=size)
    return packed({"exec_id": e.id})


def _exec(request: Request) -> tuple[Sandbox, Exec]:
    sb = running(request)
    e = sb.execs.get(request.path_params["exec_id"])
    if e is None:
        raise not_found(f"No command {request.path_params['exec_id']} in sandbox {sb.id}.")
    return sb, e


async def output(request: Request) -> StreamingResponse:
    _, e = _exec(request)
    after = query(request, rq.ExecOutput).after

    async def frames() -> AsyncIterator[bytes]:
        i = after
        while True:
            changed = e.changed
            while i < len(e.chunks):
                fd, data = e.chunks[i]
                i += 1
                yield frame({"fd": fd, "data": data})
            if e.code is not None:
                yield frame({"exit": e.code, "truncated": e.truncated})
                return
            await changed.wait()

    return StreamingResponse(frames(), media_type="application/octet-stream")


async def stdin(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxStdin)
    sb, e = _exec(request)
    if e.code is None:
        manager(request).stdin(sb, e.id, body.data, body.eof)
    return packed({})


async def poll_exec(request: Request) -> Response:
    _, e = _exec(request)
    return packed({"returncode": e.code})


async def file_op(request: Request) -> Response:
    body = await msgpack_body(request, rq.SandboxFile)
    sb = running(request)
    options = {k: v for k in ("parents", "recursive", "append")
               if (v := getattr(body, k)) is not None}
    result, out = await manager(request).file_op(sb, body.op, body.path, body.data, **options)
    return packed({"result": result, "data": out})


async def list_tunnels(request: Request) -> Response:
    sb = running(request)
    found = manager(request).tunnels.endpoints(sb.id)
    return packed({"tunnels": [{"container_port": port, **end.to_json()}
                               for port, end in sorted(found.items())]})


async def snapshot(request: Request) -> Response:
    sb = running(request)
    cp, who = plane(request), identity(request)
    layers = await manager(request).snapshot(sb)
    image_id = ids.snapshot_image_id(layers[0])
    now = time.time()
    await cp.db.write(lambda conn: conn.execute(s.sandbox_images.insert().values(
        id=image_id, workspace_id=who.workspace_id, layers=json.dumps(layers), created_at=now)))
    return packed({"image_id": image_id})


routes = [
    Route("/v1/sandboxes", create, methods=["POST"]),
    Route("/v1/sandboxes", list_sandboxes, methods=["GET"]),
    Route("/v1/sandboxes/lookup", lookup, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}", get, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/wait", wait, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/terminate", terminate, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/tags", set_tags, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec", exec_command, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}/output", output, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}/stdin", stdin, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/exec/{exec_id}", poll_exec, methods=["GET"]),
    Route("/v1/sandboxes/{sandbox_id}/fs", file_op, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/snapshot", snapshot, methods=["POST"]),
    Route("/v1/sandboxes/{sandbox_id}/tunnels", list_tunnels, methods=["GET"]),
]
