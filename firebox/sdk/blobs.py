"""Blobs from the client: content the server stores by digest (code, files for volumes)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from .. import client as client_mod
from ..exception import InvalidError
from ..wire.digests import file_sha256


async def upload_blobs(blobs: Mapping[str, bytes | Path]) -> None:
    """Send the blobs the server does not have yet; a Path's content is streamed from its file,
    never held whole in memory."""
    if not blobs:
        return
    c = client_mod.current()
    missing = (await c.request("POST", "/v1/blobs/missing", body={"digests": list(blobs)}))[
        "missing"
    ]

    async def put(digest: str) -> None:
        source = blobs[digest]
        try:
            await c.request("PUT", f"/v1/blobs/{digest}", content=source)
        except InvalidError:
            if isinstance(source, Path) and (await asyncio.to_thread(
                    file_sha256, source))[0] != digest:
                raise InvalidError(f"{source} changed while it was being uploaded; try again "
                                   "once it is written.") from None
            raise

    await asyncio.gather(*(put(d) for d in missing))
