"""Test fixtures for Image.from_registry: a real OCI registry on loopback and small images of a
static busybox, built with umoci and pushed to it with skopeo, all made on this machine.

The registry is Debian's docker-registry (CNCF distribution 2.8), over plain HTTP, optionally
behind htpasswd auth. An image is built in an OCI layout one layer at a time: a layer is either
an edit of the root filesystem below it, whose diff umoci writes (a deleted path becomes a
`.wh.NAME` whiteout), or an uncompressed tar added as it is, for what umoci never writes (an
opaque directory). umoci compresses every layer with gzip
(application/vnd.oci.image.layer.v1.tar+gzip) and skopeo pushes the OCI manifest unchanged.

Everything lands under the directories the caller passes (a test's tmp_path); nothing here
reaches past loopback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import bcrypt
import httpx

TOOLS = ("docker-registry", "skopeo", "umoci")
BUSYBOX = Path("/bin/busybox")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APP_UID = 1000
PT_INTERP = 3  # the ELF program header that names a dynamic loader
START_TIMEOUT = 10.0


def missing() -> list[str]:
    """What this machine lacks for these fixtures (scripts/test.sh installs the packages)."""
    lacking = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        lacking.append("root (the images' files belong to root and app, and umoci keeps owners "
                       "only as root)")
    if not (BUSYBOX.is_file() and _static(BUSYBOX)):
        lacking.append(f"a static {BUSYBOX} (Debian's busybox-static)")
    return lacking


def _static(executable: Path) -> bool:
    """Whether a 64-bit ELF executable names no dynamic loader, so that it runs in a root with
    no libc."""
    data = executable.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    order = "<" if data[5] == 1 else ">"
    (table,) = struct.unpack_from(order + "Q", data, 0x20)
    entry_size, entries = struct.unpack_from(order + "HH", data, 0x36)
    kinds = (struct.unpack_from(order + "I", data, table + i * entry_size)[0]
             for i in range(entries))
    return PT_INTERP not in kinds


# -- the registry ---------------------------------------------------------------------------


@dataclass
class Registry:
    """A running docker-registry on 127.0.0.1; `creds` are what its htpasswd file accepts."""

    address: str
    process: subprocess.Popen[bytes]
    log: Path
    creds: tuple[str, str] | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(workdir: Path, *, htpasswd: tuple[str, str] | None = None) -> Registry:
    """Starts a registry storing its blobs under `workdir` on a free loopback port and returns
    once it answers; with `htpasswd` (user, password) every request must carry those."""
    workdir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": address},
    }
    if htpasswd is not None:
        user, password = htpasswd
        # The registry checks the password on every request and a push makes dozens: the
        # cheapest cost bcrypt allows keeps that in microseconds rather than a second.
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "firebox-tests",
                                       "path": str(workdir / "htpasswd")}}
    # JSON is YAML too, and needs no YAML writer.
    (workdir / "config.yml").write_text(json.dumps(config, indent=2))
    # REGISTRY_* variables override the config file, so none of the caller's get through.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    log = workdir / "registry.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(workdir / "config.yml")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    registry = Registry(address, process, log, htpasswd)
    ready = {200, 401} if htpasswd else {200}
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}: "
                               f"{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{address}/v2/", timeout=1).status_code in ready:
                return registry
        time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not answer on {address} within "
                       f"{START_TIMEOUT:.0f} s: {log.read_text()}")


# -- building images ------------------------------------------------------------------------

# An edit of the root filesystem below (called with its path; umoci writes the diff), or an
# uncompressed tar added verbatim as the layer.
Layer = Callable[[Path], None] | Path


@dataclass(frozen=True)
class Config:
    """The run configuration an image carries; `env` is merged into its base's by name, the
    rest replaces the base's where given."""

    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None

    def flags(self) -> list[str]:
        flags = [f"--config.env={name}={value}" for name, value in self.env.items()]
        if self.working_dir is not None:
            flags.append(f"--config.workingdir={self.working_dir}")
        if self.user is not None:
            flags.append(f"--config.user={self.user}")
        flags += [f"--config.entrypoint={arg}" for arg in self.entrypoint or ()]
        flags += [f"--config.cmd={arg}" for arg in self.cmd or ()]
        return flags


def _umoci(*args: str | Path) -> None:
    result = subprocess.run(["umoci", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"umoci {' '.join(map(str, args))} failed: {result.stderr}")


def tags(layout: Path) -> set[str]:
    """The tags an OCI layout holds."""
    if not (layout / "index.json").exists():
        return set()
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})}


def build_image(layout: Path, tag: str, layers: Sequence[Layer], config: Config = Config(), *,
                base: str | None = None) -> None:
    """Builds image `tag` in the OCI layout at `layout` (made if missing): the layers of `base`
    (a tag of the same layout; with none, no layers), then `layers` oldest first, then `config`
    over the base's."""
    if not (layout / "index.json").exists():
        _umoci("init", "--layout", layout)
    image = f"{layout}:{tag}"
    if base is None:
        _umoci("new", "--image", image)
    else:
        _umoci("tag", "--image", f"{layout}:{base}", tag)
    for layer in layers:
        if isinstance(layer, Path):
            _umoci("raw", "add-layer", "--image", image, layer)
            continue
        # A fresh unpack for each edit: the bundle of the last one no longer matches the image
        # once a verbatim tar layer is added on top.
        with tempfile.TemporaryDirectory(dir=layout.parent) as scratch:
            bundle = Path(scratch) / "bundle"
            _umoci("unpack", "--image", image, bundle)
            layer(bundle / "rootfs")
            _umoci("repack", "--image", image, bundle)
    if flags := config.flags():
        _umoci("config", "--image", image, *flags)


def push(layout: Path, tag: str, address: str, reference: str,
         creds: tuple[str, str] | None = None) -> str:
    """Pushes image `tag` of an OCI layout to the registry at `address` as `reference`
    ("name:tag") and returns the digest of the manifest the registry holds."""
    with tempfile.TemporaryDirectory(dir=layout.parent) as scratch:
        digest = Path(scratch) / "digest"
        auth = ["--dest-creds", ":".join(creds)] if creds else ["--dest-no-creds"]
        # --insecure-policy: the machine's /etc/containers/policy.json is no business of a
        # test's push of its own image.
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
             *auth, "--digestfile", str(digest), f"oci:{layout}:{tag}",
             f"docker://{address}/{reference}"],
            check=True, capture_output=True,
        )
        return digest.read_text().strip()


# -- the images -----------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
nogroup:x:65534:
"""


def busybox_root(rootfs: Path) -> None:
    """A root filesystem with no libc: a static busybox, a link in /bin for each of its
    applets, users root, app (1000) and nobody, /tmp, /root and /home/app."""
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    for path, mode in (("tmp", 0o1777), ("root", 0o700), ("home/app", 0o755)):
        (rootfs / path).mkdir(parents=True)
        (rootfs / path).chmod(mode)  # mkdir's mode passes through the umask; chmod's does not
    os.chown(rootfs / "home" / "app", APP_UID, APP_UID)


def build_busybox(layout: Path) -> None:
    """busybox:1: the base, one layer; Env PATH and GREETING=hello-from-image, Cmd sh."""
    build_image(layout, "busybox", [busybox_root],
                Config(env={"PATH": PATH, "GREETING": "hello-from-image"}, cmd=["sh"]))


def _base(layout: Path) -> str:
    if "busybox" not in tags(layout):
        build_busybox(layout)
    return "busybox"


def _add_data(rootfs: Path) -> None:
    (rootfs / "opt" / "data").mkdir(parents=True)
    (rootfs / "opt" / "data" / "a.txt").write_text("a")
    (rootfs / "opt" / "data" / "b.txt").write_text("b")
    (rootfs / "opt" / "gone").mkdir()
    (rootfs / "opt" / "gone" / "x.txt").write_text("x")
    for directory in ("old-dir", "opaque-dir"):
        (rootfs / "etc" / directory).mkdir()
        (rootfs / "etc" / directory / "old.txt").write_text("old")


def _delete_data(rootfs: Path) -> None:
    # umoci 0.4.7's diff writes `opt/data/.wh.b.txt` and `opt/.wh.gone` (only the directory,
    # not what was in it). For old-dir, deleted and made again, it writes no opaque marker but
    # a whiteout for each old entry, `etc/old-dir/.wh.old.txt`, beside `etc/old-dir/new.txt`;
    # parent directories appear in the layer only when their own metadata changed.
    (rootfs / "opt" / "data" / "b.txt").unlink()
    shutil.rmtree(rootfs / "opt" / "gone")
    shutil.rmtree(rootfs / "etc" / "old-dir")
    (rootfs / "etc" / "old-dir").mkdir()
    (rootfs / "etc" / "old-dir" / "new.txt").write_text("new")


def _opaque_layer(path: Path) -> Path:
    """A tar that replaces /etc/opaque-dir with one holding only new.txt, as Docker writes it
    (the directory, then `.wh..wh..opq`). Made by hand: umoci's diff never writes an opaque
    marker, and 0.4.7's `umoci insert --opaque` writes a tar with no end (umoci issue #436),
    which Python's tarfile rejects."""
    directory = tarfile.TarInfo("etc/opaque-dir")
    directory.type, directory.mode = tarfile.DIRTYPE, 0o755
    content = b"new"
    new = tarfile.TarInfo("etc/opaque-dir/new.txt")
    new.size, new.mode = len(content), 0o644
    with tarfile.open(path, "w") as tar:
        tar.addfile(directory)
        tar.addfile(tarfile.TarInfo("etc/opaque-dir/.wh..wh..opq"))
        tar.addfile(new, io.BytesIO(content))
    return path


def build_layered(layout: Path) -> None:
    """layered:1: busybox:1 and three layers. 2 adds /opt/data/{a,b}.txt ("a", "b"),
    /opt/gone/x.txt and /etc/{old-dir,opaque-dir}/old.txt; 3 deletes /opt/data/b.txt and
    /opt/gone, and makes /etc/old-dir again with only new.txt (umoci's whiteouts); 4 makes
    /etc/opaque-dir opaque with only new.txt. Seen from the top: /opt/data/a.txt,
    /etc/old-dir/new.txt, /etc/opaque-dir/new.txt."""
    base = _base(layout)
    with tempfile.TemporaryDirectory(dir=layout.parent) as scratch:
        opaque = _opaque_layer(Path(scratch) / "opaque.tar")
        build_image(layout, "layered", [_add_data, _delete_data, opaque], base=base)


def _add_workdir(rootfs: Path) -> None:
    (rootfs / "srv" / "work").mkdir(parents=True)
    os.chown(rootfs / "srv" / "work", APP_UID, APP_UID)


def build_configured(layout: Path) -> None:
    """configured:1: busybox:1 and a layer making /srv/work (owned by app); Env FOO=bar beside
    the base's, WorkingDir /srv/work, User app, an Entrypoint that echoes "entry" and runs its
    arguments, Cmd echo default-cmd."""
    config = Config(
        env={"FOO": "bar"}, working_dir="/srv/work", user="app",
        entrypoint=["/bin/sh", "-c", 'echo entry; exec "$@"', "--"],
        cmd=["echo", "default-cmd"],
    )
    build_image(layout, "configured", [_add_workdir], config, base=_base(layout))


# The ready-made images by the reference they are pushed as, each with the function that builds
# it into an OCI layout, tagged there with the reference's name ("busybox" for busybox:1).
IMAGES: dict[str, Callable[[Path], None]] = {
    "busybox:1": build_busybox,
    "layered:1": build_layered,
    "configured:1": build_configured,
}


def push_image(reference: str, layout: Path, registry: Registry) -> str:
    """Builds ready-made image `reference` (a key of IMAGES) into `layout`, unless it is there,
    pushes it to `registry` with its credentials and returns the manifest's digest."""
    tag = reference.partition(":")[0]
    if tag not in tags(layout):
        IMAGES[reference](layout)
    return push(layout, tag, registry.address, reference, registry.creds)
