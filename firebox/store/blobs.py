"""Content-addressed blob store on disk: a blob's name is the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from ..wire.digests import SHA256


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Uploads a crash cut short: this store's server is the only writer, and it just began.
        for partial in root.glob("*/.*.tmp"):
            partial.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        if not SHA256.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, digest: str, data: bytes) -> None:
        """Store data under its digest; refuses data whose digest differs."""
        with self.receive(digest) as upload:
            upload.write(data)
            upload.finish()

    def receive(self, digest: str) -> BlobUpload:
        """A blob to be written piece by piece, never held whole in memory."""
        return BlobUpload(self.path(digest), digest)

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


class BlobUpload:
    """A blob arriving in pieces: hashed as it comes and written to a temporary file beside its
    place, which it takes only if the content matches its name. A blob already stored is only
    hashed, since whoever uploads it must still show they have its content."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path, self.digest = path, digest
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp: Path | None = None
        self._file: IO[bytes] | None = None
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest}.", suffix=".tmp")
            self._tmp, self._file = Path(tmp), os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)

    def finish(self) -> None:
        """Put the blob in its place; refuses content whose sha256 is not the blob's name."""
        if self._hash.hexdigest() != self.digest:
            raise ValueError("the blob's content does not match its sha256 name")
        if self._file is not None and self._tmp is not None:
            self._file.close()
            os.replace(self._tmp, self.path)
            self._tmp = None

    def __enter__(self) -> BlobUpload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:  # not finished: the partial file goes
            self._tmp.unlink(missing_ok=True)
