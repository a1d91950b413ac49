"""Image build containers are walled like function containers: a build step (root inside, as
apt needs) sees the host's system directories with what is not readable by everyone taken out,
and nothing else of the host (no /root, /home, /work, state directory or client config); it
reaches the outside (a test host of ours in a network namespace) but nothing on the host itself.
The step records what it saw into its layer, and a function in the image reads it back."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess
from helpers import Recorder, greeter

import firebox
from firebox.backends import isolation
from firebox.exception import ImageBuildError

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
    pytest.mark.skipif(os.geteuid() != 0, reason="build containers need root (overlayfs)"),
]
NETWORK = shutil.which("ip") is not None and shutil.which("nft") is not None
SEEN = "/opt/build-walls/seen.json"

# Run by the image's system Python inside the build container; argv[1] says what to try.
PROBE = r"""
import concurrent.futures, json, os, socket, sys, urllib.request
args = json.loads(sys.argv[1])
seen = {"uid": os.getuid(), "files": {}, "dirs": {}, "reach": {}, "post": None}
for path in args["files"]:
    try:
        with open(path, "rb") as f:
            seen["files"][path] = f.read(65536).decode("utf-8", "replace")
    except OSError as exc:
        seen["files"][path] = type(exc).__name__
for path in args["dirs"]:
    seen["dirs"][path] = sorted(os.listdir(path)) if os.path.isdir(path) else None
targets = [tuple(t) for t in args["tcp"]]
with open("/proc/net/route") as f:  # the default gateway: the host's end of the build's link
    for line in f.read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            gateway = socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
            targets.append((gateway, args["port"]))
def reach(target):
    try:
        socket.create_connection(target, timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    for (host, port), result in zip(targets, pool.map(reach, targets)):
        seen["reach"][f"{host}:{port}"] = result
if args["post"]:
    try:
        urllib.request.urlopen(args["post"], data=b"from the build", timeout=5).read()
        seen["post"] = "sent"
    except OSError as exc:
        seen["post"] = type(exc).__name__
os.makedirs(os.path.dirname(args["out"]), exist_ok=True)
with open(args["out"], "w") as f:
    json.dump(seen, f)
"""


def probe_step(args: dict[str, object]) -> str:
    return f"python3 -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(args))}"


def build_and_read(command: str) -> dict:
    """Build an image whose one step is command, then read back what the step saw."""
    app = firebox.App("test-build-walls")

    @app.function(image=firebox.Image.debian_slim().run_commands(command), serialized=True)
    def seen() -> str:
        with open(SEEN) as f:
            return f.read()

    with app.run(show_logs=False):
        return json.loads(seen.remote())


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses but loopback's and those of containers' links (the
    build's own link is tried from inside: its default gateway)."""
    shown = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    return [a["local"] for link in shown for a in link.get("addr_info", [])
            if not a["local"].startswith(("127.", "10.213."))]


@pytest.fixture(scope="module")
def planted() -> Iterator[dict[str, Path]]:
    """Secrets of the host's own, not readable by everyone, in directories builds see: a key
    file in /etc, a private directory in /var. Made before any build, removed after."""
    tag = secrets.token_hex(4)
    key = Path(f"/etc/firebox-build-walls-{tag}.key")
    private = Path(f"/var/lib/firebox-build-walls-{tag}")
    token = secrets.token_hex(16)
    try:
        key.touch(mode=0o600)
        key.write_text(token)
        private.mkdir(mode=0o700)
        (private / "data").write_text(token)
        yield {"key": key, "private": private, "token": Path(token)}
    finally:
        key.unlink(missing_ok=True)
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="module")
def var_server() -> Iterator[ServerProcess]:
    """A server whose state directory and client config are under /var, which builds see: so
    only the masking keeps them out, as for an operator's /var/lib/firebox."""
    root = Path(f"/var/tmp/firebox-build-walls-{secrets.token_hex(4)}")
    root.mkdir()
    srv = ServerProcess(root)
    srv.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FIREBOX_SERVER_URL", srv.url)
            mp.setenv("FIREBOX_TOKEN", srv.token)
            yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def host_service() -> Iterator[int]:
    """A TCP service on all of the host's addresses, its loopback among them."""
    listener = greeter("0.0.0.0", 0, b"hello from the host")
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture(scope="module")
def outside() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def seen(var_server, planted, host_service, outside) -> dict:
    state, config = var_server.state_dir, var_server.config_dir
    files = sorted({"/etc/shadow", str(planted["key"]), str(planted["private"] / "data"),
                    str(state / "secrets.key"), str(config / "config.toml"),
                    *(str(p) for p in isolation.host_secrets() if p.is_file())})
    dirs = ["/root", "/home", "/work", "/srv", "/opt", "/farm", str(state), str(config),
            str(planted["private"]), str(Path.home() / ".firebox")]
    tcp = [("127.0.0.1", host_service), ("127.0.0.1", var_server.port),
           *((addr, host_service) for addr in host_addresses())]
    args = {"files": files, "dirs": dirs, "tcp": tcp, "port": host_service,
            "post": outside.topic("build-walls") if NETWORK else None, "out": SEEN}
    return build_and_read(probe_step(args))


def test_a_build_step_is_root_inside_but_sees_no_host_secrets(seen, planted, var_server):
    token = str(planted["token"])
    assert seen["uid"] == 0  # apt needs root inside
    shadow = seen["files"].pop("/etc/shadow")
    users = [line.split(":") for line in shadow.splitlines() if line]
    assert users and all(not fields[1].startswith("$") for fields in users), shadow
    assert all(fields[1] in ("*", "!") for fields in users), shadow  # the passwords blanked
    # Whatever else of /etc and /var not everyone may read is gone, the host's own and ours
    # alike; the server's key and the client's token were never there.
    for path, text in seen["files"].items():
        if path == "/etc/gshadow":
            assert all(line.split(":")[1] == "!" for line in text.splitlines() if line), text
            continue
        assert text == "FileNotFoundError", path
        assert token not in text
    assert seen["dirs"].pop(str(planted["private"])) is None
    assert seen["dirs"].pop(str(var_server.state_dir)) == []  # covered by an empty tmpfs
    assert seen["dirs"].pop(str(var_server.config_dir)) in ([], None)
    # No home directories, /srv, /opt or /work of the host: empty or absent.
    assert all(not listed for listed in seen["dirs"].values()), seen["dirs"]


def test_a_build_step_reaches_nothing_on_the_host(seen, host_service, var_server):
    # Not the host's loopback services, not the control plane's port, not any of the host's
    # addresses (its end of the build's own link among them).
    assert f"127.0.0.1:{host_service}" in seen["reach"]
    assert f"127.0.0.1:{var_server.port}" in seen["reach"]
    assert not any(r.startswith("connected") for r in seen["reach"].values()), seen["reach"]
    # The control: from the host the same services answer.
    for addr in ["127.0.0.1", *host_addresses()]:
        with socket.create_connection((addr, host_service), timeout=3) as c:
            assert c.recv(100) == b"hello from the host"


@pytest.mark.skipif(not NETWORK, reason="needs iproute2 and nftables")
def test_a_build_step_reaches_the_outside(seen, outside):
    assert seen["post"] == "sent", seen
    assert outside.texts("build-walls") == ["from the build"]


@pytest.mark.skipif(not NETWORK, reason="needs iproute2 and nftables")
def test_without_egress_a_build_that_downloads_fails_saying_why(tmp_path, outside):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_CONTAINER_EGRESS": "0"})
    srv.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FIREBOX_SERVER_URL", srv.url)
            mp.setenv("FIREBOX_TOKEN", srv.token)
            post = (f"python3 -c 'import urllib.request; urllib.request.urlopen("
                    f"\"{outside.topic('no-egress')}\", data=b\"x\", timeout=5)'")
            with pytest.raises(ImageBuildError) as info:
                build_and_read(post)
    finally:
        srv.stop()
    assert "no network" in str(info.value) and "FIREBOX_CONTAINER_EGRESS" in str(info.value)
    assert outside.texts("no-egress") == []
