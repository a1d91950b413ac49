"""What a function container sees of the host and can reach from it; tests/test_walls.py checks
the walls hold under both isolating modes."""

import os
import socket

import firebox

app = firebox.App("test-walls")


def _look() -> dict:
    try:
        with open("/etc/shadow") as f:
            shadow = f"read {len(f.read())} bytes"
    except OSError as exc:
        shadow = type(exc).__name__
    return {
        "uid": os.getuid(),
        "isolation": os.environ.get("FIREBOX_ISOLATION"),
        "shadow": shadow,
        "root": sorted(os.listdir("/root")) if os.path.isdir("/root") else None,
        "home": sorted(os.listdir("/home")) if os.path.isdir("/home") else None,
        "work": sorted(os.listdir("/work")) if os.path.isdir("/work") else None,
        "shared": os.path.exists("/work/shared"),
    }


def _reach(targets: list) -> dict:
    out = {}
    for host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=3) as c:
                out[f"{host}:{port}"] = "connected: " + c.recv(100).decode()
        except OSError as exc:
            out[f"{host}:{port}"] = type(exc).__name__
    return out


def _hoard(mib: int) -> int:
    hoard = []
    for _ in range(mib // 16):  # touched page by page, so it is really used
        hoard.append(bytearray(16 * 1024 * 1024))
        for i in range(0, len(hoard[-1]), 4096):
            hoard[-1][i] = 1
    return len(hoard)


@app.function()
def look() -> dict:
    return _look()


@app.function(isolation="gvisor")
def look_gvisor() -> dict:
    return _look()


@app.function()
def reach(targets: list) -> dict:
    return _reach(targets)


@app.function(isolation="gvisor")
def reach_gvisor(targets: list) -> dict:
    return _reach(targets)


@app.function(single_use_containers=True)  # no memory= given: the default ceiling holds
def hoard(mib: int) -> int:
    return _hoard(mib)


@app.function(isolation="gvisor", single_use_containers=True)
def hoard_gvisor(mib: int) -> int:
    return _hoard(mib)
