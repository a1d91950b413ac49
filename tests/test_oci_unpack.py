"""images/oci.py's unpacking of one layer, from tars made here: whiteouts become overlayfs's,
the digest is checked, and an archive cannot write or change anything outside its layer."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from firebox.images import oci

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def blob(store: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    data = gzip.compress(raw.getvalue())
    digest = hashlib.sha256(data).hexdigest()
    (store / "sha256").mkdir(parents=True, exist_ok=True)
    (store / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
          link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def test_whiteouts_and_opaque_dirs_become_overlayfs_ones(tmp_path):
    store, dest = tmp_path / "blobs", tmp_path / "rootfs"
    dest.mkdir()
    digest = blob(store, [
        (entry("etc/", tarfile.DIRTYPE, 0o755), None),
        (entry("etc/.wh.gone"), b""),
        (entry("opt/.wh..wh..opq"), b""),
        (entry("opt/new.txt"), b"new"),
        (entry("usr/bin/tool", mode=0o4755), b"#!/bin/sh\n"),
        (entry("usr/bin/alias", tarfile.LNKTYPE, link="usr/bin/tool"), None),
    ])
    oci.unpack(store, digest, GZ, dest)
    gone = (dest / "etc" / "gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "opt", "trusted.overlay.opaque") == b"y"
    assert (dest / "opt" / "new.txt").read_text() == "new"
    assert stat.S_IMODE((dest / "usr/bin/tool").stat().st_mode) == 0o4755  # setuid kept
    assert (dest / "usr/bin/alias").stat().st_ino == (dest / "usr/bin/tool").stat().st_ino


def test_an_archive_cannot_reach_outside_its_layer(tmp_path):
    store, dest, outside = tmp_path / "blobs", tmp_path / "rootfs", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir(mode=0o700)
    digest = blob(store, [
        (entry(str(outside / "absolute.txt")), b"x"),  # lands at its path inside the layer
        (entry("../escape.txt"), b"x"),
        (entry("link", tarfile.SYMTYPE, link=str(outside)), None),
        (entry("link/through.txt"), b"x"),
    ])
    with pytest.raises(oci.PullFailed, match="symbolic link /link"):
        oci.unpack(store, digest, GZ, dest)
    assert not (tmp_path / "escape.txt").exists() and not (outside / "through.txt").exists()
    assert not (outside / "absolute.txt").exists()
    assert (dest / str(outside).lstrip("/") / "absolute.txt").read_text() == "x"
    # A directory entry over a link the archive made replaces the link; the mode stays inside.
    dest2 = tmp_path / "rootfs2"
    dest2.mkdir()
    digest = blob(store, [(entry("link", tarfile.SYMTYPE, link=str(outside)), None),
                          (entry("link", tarfile.DIRTYPE, 0o777), None)])
    oci.unpack(store, digest, GZ, dest2)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert (dest2 / "link").is_dir() and not (dest2 / "link").is_symlink()


def test_a_corrupt_blob_is_refused(tmp_path):
    store, dest = tmp_path / "blobs", tmp_path / "rootfs"
    dest.mkdir()
    digest = blob(store, [(entry("a.txt"), b"a" * 10000)])
    path = store / "sha256" / digest.split(":")[1]
    path.write_bytes(path.read_bytes()[:-12] + b"\0" * 12)  # the gzip trailer broken
    with pytest.raises(oci.PullFailed, match="corrupt"):
        oci.unpack(store, digest, GZ, dest)
    good = blob(store, [(entry("b.txt"), b"b")])
    (store / "sha256" / good.split(":")[1]).write_bytes(
        (store / "sha256" / good.split(":")[1]).read_bytes() + b"junk")
    with pytest.raises(oci.PullFailed, match="does not match its digest|corrupt"):
        oci.unpack(store, good, GZ, dest)
