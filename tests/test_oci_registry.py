"""tests/oci_registry.py: its registry serves the images it builds as they were built, their
whiteouts and opaque directory included, and behind htpasswd only to a client with the password."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci_registry
import pytest
from oci_registry import PATH, Registry, push, push_image, start_registry

MISSING = oci_registry.missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason="needs " + ", ".join(MISSING))

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BASE_ENV = [f"PATH={PATH}", "GREETING=hello-from-image"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images") / "layout"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


def inspect(registry: Registry, reference: str, *flags: str) -> Any:
    """What `skopeo inspect` says of an image in the registry, as JSON."""
    auth = ["--creds", ":".join(registry.creds)] if registry.creds else ["--no-creds"]
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *auth, *flags,
         f"docker://{registry.address}/{reference}"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def pull(registry: Registry, reference: str, layout: Path,
         creds: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    auth = ["--src-creds", ":".join(creds)] if creds else ["--src-no-creds"]
    return subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", *auth,
         f"docker://{registry.address}/{reference}", f"oci:{layout}:pulled"],
        capture_output=True, text=True,
    )


def layer_names(layout: Path, tag: str) -> list[list[str]]:
    """The paths in each layer of an image in an OCI layout, oldest layer first; reading each
    tar to its end also shows it is whole."""
    index = json.loads((layout / "index.json").read_text())
    [entry] = [m for m in index["manifests"]
               if m["annotations"]["org.opencontainers.image.ref.name"] == tag]

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    manifest = json.loads(blob(entry["digest"]).read_text())
    names = []
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"]), "r:gz") as tar:
            names.append(tar.getnames())
    return names


def test_each_image_is_served_with_the_layers_and_config_it_was_built_with(
        registry: Registry, layout: Path) -> None:
    expected = {
        "busybox:1": (1, {"Env": BASE_ENV, "Cmd": ["sh"]}),
        "layered:1": (4, {"Env": BASE_ENV, "Cmd": ["sh"]}),
        "configured:1": (2, {
            "Env": [*BASE_ENV, "FOO=bar"], "WorkingDir": "/srv/work", "User": "app",
            "Entrypoint": ["/bin/sh", "-c", 'echo entry; exec "$@"', "--"],
            "Cmd": ["echo", "default-cmd"],
        }),
    }
    first_layers = set()
    for reference, (layers, config) in expected.items():
        digest = push_image(reference, layout, registry)
        info = inspect(registry, reference)
        assert info["Digest"] == digest
        assert len(info["Layers"]) == layers
        assert inspect(registry, reference, "--config")["config"] == config
        manifest = inspect(registry, reference, "--raw")
        assert [layer["mediaType"] for layer in manifest["layers"]] == [GZIP_LAYER] * layers
        first_layers.add(manifest["layers"][0]["digest"])
    assert len(first_layers) == 1, "every image shares busybox:1's layer"


def test_deletions_come_back_from_the_registry_as_whiteouts(
        registry: Registry, layout: Path, tmp_path: Path) -> None:
    push_image("layered:1", layout, registry)
    pulled = tmp_path / "pulled"
    result = pull(registry, "layered:1", pulled, None)
    assert result.returncode == 0, result.stderr

    base, added, deleted, opaque = layer_names(pulled, "pulled")
    assert "bin/busybox" in base and "etc/passwd" in base
    assert {"opt/data/a.txt", "opt/data/b.txt", "etc/old-dir/old.txt"} <= set(added)
    assert {"opt/data/.wh.b.txt", "opt/.wh.gone", "etc/old-dir/.wh.old.txt",
            "etc/old-dir/new.txt"} <= set(deleted)
    assert opaque == ["etc/opaque-dir", "etc/opaque-dir/.wh..wh..opq", "etc/opaque-dir/new.txt"]


def test_a_registry_with_htpasswd_serves_only_a_client_with_the_password(
        layout: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry", htpasswd=("tester", "s3cret pass")) as registry:
        push_image("busybox:1", layout, registry)
        with pytest.raises(subprocess.CalledProcessError) as refused:
            push(layout, "busybox", registry.address, "busybox:2")
        assert b"unauthorized" in refused.value.stderr

        anonymous = pull(registry, "busybox:1", tmp_path / "anonymous", None)
        assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr
        wrong = pull(registry, "busybox:1", tmp_path / "wrong", ("tester", "guess"))
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr
        right = pull(registry, "busybox:1", tmp_path / "right", registry.creds)
        assert right.returncode == 0, right.stderr
        assert "bin/busybox" in layer_names(tmp_path / "right", "pulled")[0]
    assert registry.process.poll() is not None


def test_the_base_root_runs_with_no_libc(layout: Path, tmp_path: Path) -> None:
    if "configured" not in oci_registry.tags(layout):
        oci_registry.build_configured(layout)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:configured", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert not (rootfs / "lib").exists() and not (rootfs / "usr").exists()
    out = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c",
         "id app; stat -c '%A %U' /tmp /home/app /srv/work"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert out.splitlines() == [
        "uid=1000(app) gid=1000(app) groups=1000(app)",
        "drwxrwxrwt root", "drwxr-xr-x app", "drwxr-xr-x app",
    ]
