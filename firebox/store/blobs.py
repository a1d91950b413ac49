"""Content-addressed blob store on disk: a blob's name is the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not SHA256.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, digest: str, data: bytes) -> None:
        """Store data under its digest; refuses data whose digest differs."""
        if sha256(data) != digest:
            raise ValueError("the blob's content does not match its sha256 name")
        path = self.path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{digest}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()
