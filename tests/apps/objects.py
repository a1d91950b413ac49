"""Functions that use Dicts, Queues, Secrets and Volumes inside containers."""

import os
from pathlib import Path

import firebox as modal
from firebox.sdk.volume import mounted_path

app = modal.App("test-objects", secrets=[modal.Secret.from_dict({"LAYER": "app", "APP_ONLY": "1"})])
vol = modal.Volume.from_name("test-objects-vol", create_if_missing=True)


@app.function()
def dict_and_queue(d, q):
    d["from-container"] = d.get("from-caller", 0) + 1
    q.put("hello")
    return q.get(timeout=30)


@app.function()
def consume(q, n):
    return [q.get(timeout=60) for _ in range(n)]


@app.function(secrets=[modal.Secret.from_dict({"LAYER": "function"})], env={"EXTRA": "e"})
def read_env():
    return {k: os.environ.get(k) for k in ("LAYER", "APP_ONLY", "EXTRA", "NAMED")}


@app.function(volumes={"/data": vol})
def write_volume(name, text, commit=True):
    path = Path(mounted_path(f"/data/{name}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if commit:
        vol.commit()
    return str(path)


@app.function(volumes={Path("/data"): vol})  # a pathlib key, as Modal apps often write
def read_volume(name, reload=False):
    if reload:
        vol.reload()
    path = Path(mounted_path(f"/data/{name}"))
    return path.read_text() if path.exists() else None


@app.function(volumes={"/data": vol})
def write_symlink():
    Path(mounted_path("/data/link")).symlink_to("/etc/passwd")
    vol.commit()


@app.function(volumes={"/data": vol})
def write_at_mount_path(name, text):
    # Modal-style code: the volume is at its mount path, no mapping helper.
    Path("/data", name).write_text(text)
    vol.commit()
    return os.environ.get("FIREBOX_VOLUMES_AT_PATH")
