"""The Volume API: a volume's manifest, commits of a container's changes, and listing, reading,
removing and copying its files."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..core import volumes
from . import requests as rq
from .bodies import identity, msgpack_body, packed, query
from .objects import ObjectRoutes

VOLUMES = ObjectRoutes(volumes.VOLUMES, "volumes", renamable=True)


async def manifest(request: Request) -> Response:
    cp, volume_id = await VOLUMES.target(request)
    return packed(await volumes.manifest(cp, volume_id))


async def commit(request: Request) -> Response:
    """Apply a set of changes: put files (already uploaded as blobs) and delete paths."""
    body = await msgpack_body(request, rq.VolumeCommit)
    cp, volume_id = await VOLUMES.target(request)
    version = await volumes.commit(cp, identity(request).workspace_id, volume_id, body.put,
                                   body.delete, body.force)
    return packed({"version": version})


async def listdir(request: Request) -> Response:
    body = await msgpack_body(request, rq.VolumeList)
    cp, volume_id = await VOLUMES.target(request)
    return packed({"entries": await volumes.listdir(cp, volume_id, body.path, body.recursive)})


async def read_file(request: Request) -> Response:
    cp, volume_id = await VOLUMES.target(request)
    path = await volumes.contents(cp, volume_id, query(request, rq.VolumeFile).path)
    return FileResponse(path, media_type="application/octet-stream")


async def remove(request: Request) -> Response:
    body = await msgpack_body(request, rq.VolumeRemove)
    cp, volume_id = await VOLUMES.target(request)
    await volumes.remove(cp, volume_id, body.path, body.recursive)
    return packed({})


async def copy(request: Request) -> Response:
    """Copy files or directories; into dst when it is a directory or there are several."""
    body = await msgpack_body(request, rq.VolumeCopy)
    cp, volume_id = await VOLUMES.target(request)
    await volumes.copy(cp, volume_id, body.src_paths, body.dst_path, body.recursive)
    return packed({})


routes = [
    *VOLUMES.routes(),
    Route("/v1/volumes/{ref}/manifest", manifest, methods=["GET"]),
    Route("/v1/volumes/{ref}/commit", commit, methods=["POST"]),
    Route("/v1/volumes/{ref}/list", listdir, methods=["POST"]),
    Route("/v1/volumes/{ref}/file", read_file, methods=["GET"]),
    Route("/v1/volumes/{ref}/remove", remove, methods=["POST"]),
    Route("/v1/volumes/{ref}/copy", copy, methods=["POST"]),
]
