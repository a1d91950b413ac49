"""Functions that try to get out of their container; tests/test_isolation.py checks they can't."""

import os
import ssl
import subprocess

import firebox

app = firebox.App("test-isolation")


@app.function()
def whoami():
    return {
        "container_id": os.environ["FIREBOX_CONTAINER_ID"],
        "isolation": os.environ.get("FIREBOX_ISOLATION"),
        "pid": os.getpid(),
    }


@app.function()
def leave_in_tmp(name, text):
    with open(f"/tmp/{name}", "w") as f:
        f.write(text)
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function()
def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@app.function(isolation="process")
def read_file_unisolated(path):
    return read_file.local(path)


@app.function()
def write_file(path):
    try:
        with open(path, "w") as f:
            f.write("escaped")
        return "written"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@app.function()
def send_signal(pid, sig):
    try:
        os.kill(pid, sig)
        return "sent"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@app.function(single_use_containers=True)
def fork_bomb(attempts):
    """Start processes that stay until the container goes, until the kernel says no."""
    started, error = 0, None
    for _ in range(attempts):
        try:
            subprocess.Popen(["sleep", "120"])
        except OSError as exc:
            error = exc.errno
            break
        started += 1
    return {"started": started, "error": error, "container_id": os.environ["FIREBOX_CONTAINER_ID"]}


@app.function(memory=(64, 256), single_use_containers=True)
def memory_bomb():
    hoard = []
    for _ in range(64):  # 1 GiB in 16 MiB pieces, each touched so it is really used
        hoard.append(bytearray(16 * 1024 * 1024))
        for i in range(0, len(hoard[-1]), 4096):
            hoard[-1][i] = 1
    return len(hoard)


@app.function(isolation="gvisor")
def kernel():
    with open("/proc/version") as f:
        version = f.read()
    # coreutils' ls and stat, which runsc 20221219 refuses without the statx shim (EINVAL).
    ls = subprocess.run(["ls", "/", "/tmp"], capture_output=True, text=True)
    st = subprocess.run(["stat", "-c", "%F", "/"], capture_output=True, text=True)
    trusted = [v for cert in ssl.create_default_context().get_ca_certs()
               for rdn in cert["subject"] for k, v in rdn if k == "commonName"]
    return {"version": version, "isolation": os.environ.get("FIREBOX_ISOLATION"),
            "ls": (ls.returncode, ls.stdout, ls.stderr), "stat": (st.returncode, st.stdout),
            "trusts_firebox": "firebox tunnels CA" in trusted}


@app.function(cpu=(0.25, 0.5), memory=(100, 300))
def limited():
    return os.environ["FIREBOX_CONTAINER_ID"]


@app.function(isolation="gvisor", memory=(64, 256), single_use_containers=True)
def memory_bomb_in_gvisor():
    return memory_bomb.local()


@app.function(block_network=True)
def offline(url):
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
        reached = True
    except OSError:
        reached = False
    # Its own channel and nested calls still work, over the control plane's unix socket.
    return {"reached_server_port": reached, "nested": whoami.remote()["isolation"]}


@app.function(block_network=True, isolation="process")
def offline_without_isolation():
    return "ran"


@app.function()
def reach(url):
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
    return True
