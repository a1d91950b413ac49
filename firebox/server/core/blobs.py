"""A workspace's blobs: content-addressed uploads, readable only by the workspaces that
uploaded them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...store import schema as s
from ...wire.digests import SHA256
from .errors import invalid, not_found
from .ownership import owned

if TYPE_CHECKING:
    from .plane import ControlPlane

WRITE_SIZE = 1024 * 1024  # bytes of an upload handed to the disk at a time


async def missing(cp: ControlPlane, workspace_id: str, digests: list[str]) -> list[str]:
    """Which of digests the workspace has still to upload, in their order."""
    have = await owned(cp, workspace_id, digests)
    return [d for d in digests if d not in have]


async def receive(cp: ControlPlane, workspace_id: str, digest: str,
                  chunks: AsyncIterator[bytes]) -> int:
    """Store an upload as the blob `digest` of the workspace; its size. Written a MiB at a
    time off the event loop and hashed as it comes: a blob is never held in memory (its size
    is capped by api/limits.py)."""
    try:
        upload = cp.blobs.receive(digest)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    with upload:
        pending = bytearray()
        async for chunk in chunks:
            pending += chunk
            if len(pending) >= WRITE_SIZE:
                await asyncio.to_thread(upload.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(upload.write, bytes(pending))
        try:
            await asyncio.to_thread(upload.finish)  # checks the content against its name
        except ValueError as exc:
            raise invalid(str(exc)) from None
    now = time.time()

    async def op(conn: Any) -> None:
        await conn.execute(
            cp.db.insert_ignore(s.blob_owners).values(
                workspace_id=workspace_id, sha256=digest, created_at=now
            )
        )

    await cp.db.write(op)
    return upload.size


async def path(cp: ControlPlane, workspace_id: str, digest: str) -> Path:
    """Where the workspace's blob `digest` lies; NotFoundError if it is not the workspace's."""
    if not SHA256.match(digest) or not await owned(cp, workspace_id, [digest]):
        raise not_found(f"No blob {digest} in this workspace.")
    return cp.blobs.path(digest)
