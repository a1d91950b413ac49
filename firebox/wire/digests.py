"""Content digests: a blob (code, a volume's file, an image's file) is named by the sha256 of its
bytes, on the client that uploads it and in the store that keeps it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")  # what a digest looks like
CHUNK = 1024 * 1024  # bytes of a file read at a time


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size
