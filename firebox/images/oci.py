"""Images from OCI registries: a pull with skopeo into an OCI layout whose blobs are shared by
every pull on this server, then each layer unpacked once into a layer directory of its own
(rootfs/), its whiteouts turned into overlayfs's, so the layers stack like firebox's own.

skopeo speaks the registry protocols (Docker Hub, GHCR, ECR, Artifact Registry, a private one)
and checks every blob against its digest; the layer store checks each again as it unpacks, so a
blob corrupted since the pull is refused rather than stored."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import ipaddress
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..wire import settings

Log = Callable[[str], Awaitable[None]]
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
LAYER_TYPES = {  # media type -> how its bytes are compressed
    "application/vnd.oci.image.layer.v1.tar": "",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
}
PULL_TIMEOUT = 3600.0


class PullFailed(Exception):
    """A pull or an unpack failed; the message says why and what to do."""


@dataclass
class OciImage:
    """What a pulled image is: its manifest's digest, its layers oldest first (digest, media
    type) and the run configuration it carries."""

    digest: str
    layers: list[tuple[str, str]]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None


def reference(tag: str) -> str:
    """The skopeo transport reference of an image name as Docker writes it."""
    if "://" in tag or tag.startswith("docker:"):
        raise PullFailed(f"{tag!r}: name the image as Docker does (registry/name:tag or "
                         "name@sha256:...), without a transport")
    return f"docker://{tag}"


def registry_host(tag: str) -> str:
    first = tag.split("/", 1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def insecure(tag: str) -> bool:
    """Whether to speak plain HTTP (or unverified TLS) to the image's registry: one on this
    machine's loopback, as Docker allows, or one named in FIREBOX_INSECURE_REGISTRIES."""
    host = registry_host(tag)
    if host in settings.INSECURE_REGISTRIES.get():
        return True
    name = host
    if name.startswith("["):  # [::1]:5000
        name = name[1:name.find("]")]
    elif name.count(":") == 1:  # 127.0.0.1:5000
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def pull(tag: str, blobs: Path, creds: tuple[str, str] | None, log: Log) -> OciImage:
    """Copy the image into a fresh OCI layout whose blobs live in the shared directory blobs
    (those already there are not fetched again); return what it is. Raises PullFailed."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise PullFailed("pulling registry images needs skopeo on the server (Debian package "
                         "skopeo; scripts/install.sh installs it)")
    blobs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=blobs.parent, prefix="pull-") as tmp:
        layout = Path(tmp) / "layout"
        argv = [skopeo, "--command-timeout", f"{int(PULL_TIMEOUT)}s", "copy", "--retry-times",
                "2", "--dest-shared-blob-dir", str(blobs)]
        if insecure(tag):
            argv.append("--src-tls-verify=false")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": tmp}
        auth = Path(tmp) / "auth.json"
        if creds is not None:  # a file only skopeo reads, never its command line
            token = f"{creds[0]}:{creds[1]}".encode()
            auth.write_text(json.dumps({"auths": {registry_host(tag): {
                "auth": base64.b64encode(token).decode()}}}))
            auth.chmod(0o600)
            argv += ["--src-authfile", str(auth)]
        argv += [reference(tag), f"oci:{layout}:image"]
        await log(f"$ skopeo copy {reference(tag)}")
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines = []
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            await log(line)
        if await proc.wait() != 0:
            raise PullFailed(_pull_error(tag, "\n".join(lines)))
        return read_layout(layout, blobs)


def _pull_error(tag: str, output: str) -> str:
    low = output.lower()
    if "manifest unknown" in low or "not found" in low or "name unknown" in low:
        why = "the registry has no such image or tag; check the name and tag"
    elif "unauthorized" in low or "authentication required" in low or "denied" in low:
        why = ("the registry refused access; pass a firebox Secret with REGISTRY_USERNAME and "
               "REGISTRY_PASSWORD (from_registry(tag, secret=...))")
    elif "connection refused" in low or "no such host" in low or "timeout" in low \
            or "network is unreachable" in low:
        why = (f"the registry {registry_host(tag)} cannot be reached from the server; check "
               "the address and that the server has a network route to it")
    elif "digest" in low and ("mismatch" in low or "did not match" in low):
        why = "a blob did not match its digest (corrupt in the registry or in transit)"
    else:
        why = "skopeo failed (its output is above)"
    tail = output.strip().splitlines()[-1:] or [""]
    return f"pulling {tag}: {why}. skopeo said: {tail[0]}"


def _blob(blobs: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef"
                                                           for c in hexdigest):
        raise PullFailed(f"the image names a blob {digest!r} that is not a sha256 digest")
    return blobs / algo / hexdigest


def read_layout(layout: Path, blobs: Path) -> OciImage:
    """The single image of an OCI layout: its manifest and config, from the shared blobs."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise PullFailed(f"the pulled layout holds {len(manifests)} images, not one")
    digest = manifests[0]["digest"]
    manifest = json.loads(_verified(blobs, digest))
    if manifest.get("manifests"):
        raise PullFailed("the registry sent an image index with no image for linux/amd64")
    config = json.loads(_verified(blobs, manifest["config"]["digest"]))
    run = config.get("config") or {}
    layers = []
    for entry in manifest.get("layers") or []:
        media = entry.get("mediaType", "")
        if media not in LAYER_TYPES:
            raise PullFailed(f"layer {entry.get('digest')} has media type {media!r}, which "
                             "firebox cannot unpack (it takes tar, tar+gzip and tar+zstd)")
        layers.append((entry["digest"], media))
    env = {}
    for item in run.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return OciImage(digest=digest, layers=layers, env=env,
                    workdir=run.get("WorkingDir") or None, user=run.get("User") or None,
                    entrypoint=run.get("Entrypoint") or None, cmd=run.get("Cmd") or None)


def _verified(blobs: Path, digest: str) -> bytes:
    data = _blob(blobs, digest).read_bytes()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise PullFailed(f"the stored blob {digest} does not match its digest; pull again")
    return data


class _Hashing:
    """A file object that hashes what is read through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha = f, hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.sha.hexdigest()


def unpack(blobs: Path, digest: str, media: str, dest: Path) -> int:
    """Unpack one layer blob into dest (a layer's rootfs/), its whiteouts as overlayfs's:
    `.wh.NAME` a 0/0 character device, `.wh..wh..opq` the opaque attribute on its directory.
    Checks the blob against its digest as it goes; raises PullFailed (dest half-written: the
    caller drops it). Returns the bytes read."""
    compression = LAYER_TYPES[media]
    with _blob(blobs, digest).open("rb") as raw:
        hashing = _Hashing(raw)
        stream: Any = hashing
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=hashing, mode="rb")  # type: ignore[arg-type]
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise PullFailed(f"layer {digest} is zstd-compressed and the server has no "
                                 "zstandard module; `pip install zstandard` there") from None
            stream = zstandard.ZstdDecompressor().stream_reader(hashing)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    _extract(tar, member, dest)
            if compression == "gzip":
                stream.read()  # gzip's trailer: its CRC and size are checked there
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise PullFailed(f"layer {digest} is not a readable tar archive ({exc}); the "
                             "blob is corrupt: pull again") from None
        got = hashing.drain()
    if got != digest:
        raise PullFailed(f"layer {digest} does not match its digest (it reads as {got}): the "
                         "blob is corrupt; pull again")
    return hashing.size


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    path = PurePosixPath(member.name.lstrip("/"))
    if ".." in path.parts or not path.parts or path.parts == (".",):
        return  # the archive's root entry, or an entry that would climb out: never written
    name = path.name
    parent = dest / path.parent
    _no_links_between(dest, parent)
    if name == OPAQUE:
        parent.mkdir(parents=True, exist_ok=True)
        os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
        return
    if name.startswith(WHITEOUT):
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / name[len(WHITEOUT):]
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        return
    if member.ischr() or member.isblk() or member.isfifo():
        return  # device nodes: a container gets its own /dev
    target = dest / path
    if member.islnk():
        source = dest / PurePosixPath(member.linkname.lstrip("/"))
        if ".." in PurePosixPath(member.linkname).parts:
            return
        _no_links_between(dest, source.parent)
        parent.mkdir(parents=True, exist_ok=True)
        _remove(target)
        with contextlib.suppress(FileNotFoundError):  # a link to a file of a lower layer
            os.link(source, target, follow_symlinks=False)
        return
    parent.mkdir(parents=True, exist_ok=True)
    if not member.isdir() or target.is_symlink():
        _remove(target)  # a directory replaces a link: its mode must not land where it points
    # The members' own paths and modes, owners numeric: the setuid bit of su or sudo is the
    # image's, and the checks above keep every write inside dest.
    # By the checked relative path: tarfile would put an absolute name at that host path.
    tar.extract(member.replace(name=str(path), deep=False), dest, set_attrs=True,
                numeric_owner=True, filter="fully_trusted")


def _no_links_between(dest: Path, directory: Path) -> None:
    """Refuse a path that goes through a symbolic link the archive made (it could point out)."""
    here = dest
    for part in directory.relative_to(dest).parts:
        here = here / part
        if here.is_symlink():
            raise PullFailed(f"the layer writes through the symbolic link /{here.relative_to(dest)}"
                             "; firebox refuses such archives")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
