"""Image.from_registry: images pulled from a real registry on loopback (Debian's
docker-registry, images the test builds with umoci), run as the container's whole root under
bubblewrap and gVisor, with their config, their whiteouts, later steps over them, a login from
a Secret, and each failure a clear error with nothing half-stored."""

from __future__ import annotations

import shutil

import oci_registry
import pytest
from conftest import ServerProcess, current

import firebox as modal
from firebox.exception import ImageBuildError, InvalidError

pytestmark = pytest.mark.skipif(bool(oci_registry.missing()),
                                reason=f"needs {', '.join(oci_registry.missing())}")
MODES = ["namespaces"] + (["gvisor"] if shutil.which("runsc") else [])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    with oci_registry.start_registry(root / "registry") as reg:
        layout = root / "layout"
        for ref in oci_registry.IMAGES:
            oci_registry.push_image(ref, layout, reg)
        yield reg


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("registry-server"))
    srv.start()
    with current(srv):
        yield srv
    srv.stop()


def _run(image: modal.Image, mode: str, fn, *args):
    app = modal.App(f"registry-{mode}")
    remote = app.function(image=image, isolation=mode, serialized=True)(fn)
    with app.run():
        return remote.remote(*args)


def sh_fn():
    """A function run in the container: a command's output there (pickled by value)."""
    def sh(cmd: str) -> str:
        import subprocess

        done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True)
        return done.stdout + done.stderr

    return sh


def look_fn():
    def look() -> dict:
        import os
        import subprocess
        import sys

        def sh(cmd: str) -> str:
            return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True).stdout

        return {"os": sh("cat /etc/os-release 2>/dev/null; ls /bin/busybox"),
                "greeting": os.environ.get("GREETING"), "path": os.environ.get("PATH"),
                "python": sys.version_info[:2], "uid": os.getuid(), "cwd": os.getcwd(),
                "ls_usr": sh("ls /usr 2>&1"), "echo": sh("echo hi from $0")}

    return look


@pytest.mark.parametrize("mode", MODES)
def test_a_registry_image_is_the_whole_root(registry, srv, mode):
    image = modal.Image.from_registry(f"{registry.address}/busybox:1")
    got = _run(image, mode, look_fn())
    assert got["greeting"] == "hello-from-image"
    assert "/bin/busybox" in got["os"] and "Debian" not in got["os"]  # not the host's root
    assert got["echo"] == "hi from /bin/sh\n"
    assert tuple(got["python"]) == tuple(__import__("sys").version_info[:2])
    assert got["path"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize("mode", MODES)
def test_whiteouts_and_opaque_directories_hide_what_lower_layers_had(registry, srv, mode):
    image = modal.Image.from_registry(f"{registry.address}/layered:1")
    out = _run(image, mode, sh_fn(), "ls /opt/data /opt /etc/old-dir /etc/opaque-dir; "
                                     "cat /opt/data/a.txt")
    assert out == ("/etc/old-dir:\nnew.txt\n\n/etc/opaque-dir:\nnew.txt\n\n/opt:\ndata\n\n"
                   "/opt/data:\na.txt\na")


@pytest.mark.parametrize("mode", MODES)
def test_the_images_env_workdir_user_and_entrypoint_apply(registry, srv, mode, capfd):
    image = modal.Image.from_registry(f"{registry.address}/configured:1")
    got = _run(image, mode, look_fn())
    assert got["uid"] == 1000 and got["cwd"] == "/srv/work"
    assert got["greeting"] == "hello-from-image"
    # The entrypoint ran first ("echo entry"), then exec'd the runtime: its line is the log's.
    app = modal.App("registry-entry")
    f = app.function(image=image, isolation=mode, serialized=True)(sh_fn())
    with app.run():
        assert f.remote("echo $FOO; id -un") == "bar\napp\n"
    assert "[sh] entry\n" in capfd.readouterr().out


@pytest.mark.parametrize("mode", MODES)
def test_steps_over_a_registry_image_build_on_its_root(registry, srv, mode, tmp_path):
    local = tmp_path / "note.txt"
    local.write_text("from the client\n")
    image = (modal.Image.from_registry(f"{registry.address}/busybox:1")
             .run_commands("mkdir -p /opt/made && echo built > /opt/made/it && rm /bin/vi")
             .add_local_file(local, "/opt/made/note.txt", copy=True)
             .pip_install("six==1.17.0")
             .env({"MODE": "fast"})
             .workdir("/opt/made"))
    out = _run(image, mode, sh_fn(), "cat it note.txt; echo $MODE; ls /bin/vi 2>&1; "
                                     "python -c 1 2>&1 | head -1")
    assert out.startswith("built\nfrom the client\nfast\nls: /bin/vi: No such file")
    app = modal.App("registry-pip")

    def six_version() -> str:
        import six

        return six.__version__

    f = app.function(image=image, isolation=mode, serialized=True)(six_version)
    with app.run():
        assert f.remote() == "1.17.0"


def test_a_private_registry_takes_the_login_of_a_secret(srv, tmp_path):
    with oci_registry.start_registry(tmp_path / "private", htpasswd=("puller", "s3cret")) as reg:
        oci_registry.push_image("busybox:1", tmp_path / "layout", reg)
        tag = f"{reg.address}/busybox:1"
        with pytest.raises(ImageBuildError, match="refused access.*REGISTRY_USERNAME"):
            _run(modal.Image.from_registry(tag), "namespaces", sh_fn(), "true")
        wrong = modal.Secret.from_dict({"REGISTRY_USERNAME": "puller",
                                        "REGISTRY_PASSWORD": "nope"})
        with pytest.raises(ImageBuildError, match="refused access"):
            _run(modal.Image.from_registry(tag, secret=wrong), "namespaces", sh_fn(), "true")
        right = modal.Secret.from_dict({"REGISTRY_USERNAME": "puller",
                                        "REGISTRY_PASSWORD": "s3cret"})
        image = modal.Image.from_registry(tag, secret=right)
        assert _run(image, "namespaces", sh_fn(), "echo $GREETING") == "hello-from-image\n"
        # Google's registries: the service account's JSON is the password of _json_key.
        gcp = modal.Secret.from_dict({"SERVICE_ACCOUNT_JSON": "{}"})
        with pytest.raises(ImageBuildError, match="refused access"):
            _run(modal.Image.from_gcp_artifact_registry(tag, secret=gcp), "namespaces",
                 sh_fn(), "true")


def _layers(srv: ServerProcess) -> set[str]:
    return {p.name for p in (srv.state_dir / "images" / "layers").iterdir()}


def test_bad_tags_unreachable_registries_and_corrupt_layers_are_clear_errors(registry, srv,
                                                                             tmp_path):
    before = _layers(srv)
    with pytest.raises(ImageBuildError, match="no such image or tag"):
        _run(modal.Image.from_registry(f"{registry.address}/busybox:nope"), "namespaces",
             sh_fn(), "true")
    port = oci_registry._free_port()
    with pytest.raises(ImageBuildError, match="cannot be reached"):
        _run(modal.Image.from_registry(f"127.0.0.1:{port}/busybox:1"), "namespaces",
             sh_fn(), "true")
    with pytest.raises(InvalidError, match="image name like"):
        modal.Image.from_registry("two words")
    # A layer whose bytes changed in the registry's storage: skopeo refuses its digest.
    with oci_registry.start_registry(tmp_path / "corrupt") as reg:
        oci_registry.push_image("configured:1", tmp_path / "layout", reg)
        blobs = list((tmp_path / "corrupt" / "storage").rglob("blobs/sha256/*/*/data"))
        biggest = max(blobs, key=lambda p: p.stat().st_size)  # the busybox layer
        data = bytearray(biggest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        biggest.write_bytes(bytes(data))
        with pytest.raises(ImageBuildError, match="digest"):
            _run(modal.Image.from_registry(f"{reg.address}/configured:1"), "namespaces",
                 sh_fn(), "true")
    assert _layers(srv) == before  # nothing half-stored
    assert not [p for p in (srv.state_dir / "images" / "layers").iterdir()
                if p.name.endswith(".part")]


def test_a_dockerfile_builds_and_runs(registry, srv, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.txt").write_text("main\n")
    (tmp_path / "app" / "skip.log").write_text("ignored\n")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    (tmp_path / "Dockerfile").write_text(f"""\
# syntax=docker/dockerfile:1
ARG BASE={registry.address}/busybox:1
FROM ${{BASE}}
ENV APP_HOME=/srv/app \\
    LEVEL="two words"
WORKDIR $APP_HOME
COPY app/ ./
COPY --chown=app app/main.txt /srv/owned.txt
RUN echo "ran with $LEVEL" > ran.txt
USER app
EXPOSE 8000
CMD ["echo", "unused"]
""")
    image = modal.Image.from_dockerfile(tmp_path / "Dockerfile")
    out = _run(image, "namespaces", sh_fn(), "pwd; ls; cat ran.txt; id -un; "
                                             "stat -c %U /srv/owned.txt")
    assert out == "/srv/app\nmain.txt\nran.txt\nran with two words\napp\napp\n"
    # dockerfile_commands over any image; a shell-form ENTRYPOINT could not run the runtime.
    more = image.dockerfile_commands("RUN echo more > /tmp/x", "ENV EXTRA=1")
    assert _run(more, "namespaces", sh_fn(), "echo $EXTRA") == "1\n"
    with pytest.raises(InvalidError, match="line 1: a shell-form ENTRYPOINT"):
        image.dockerfile_commands("ENTRYPOINT echo hi")
    with pytest.raises(InvalidError, match="multi-stage"):
        image.dockerfile_commands(f"FROM {registry.address}/busybox:1")


@pytest.mark.parametrize("mode", MODES)
def test_a_sandbox_runs_in_a_registry_image(registry, tmp_path, mode):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_SANDBOX_ISOLATION": mode})
    srv.start()
    try:
        with current(srv):
            app = modal.App.lookup("registry-sandbox", create_if_missing=True)
            image = (modal.Image.from_registry(f"{registry.address}/layered:1")
                     .run_commands("echo made > /opt/data/made.txt"))
            sb = modal.Sandbox.create(app=app, image=image)
            try:
                p = sb.exec("sh", "-c", "ls /opt/data; echo $GREETING; ls /usr 2>&1 | head -1")
                assert p.stdout.read() == ("a.txt\nmade.txt\nhello-from-image\n"
                                           "ls: /usr: No such file or directory\n")
                assert p.wait() == 0
                with pytest.raises(InvalidError, match="registry image is not supported yet"):
                    sb.snapshot_filesystem()
            finally:
                sb.terminate()
    finally:
        srv.stop()


def test_image_list_and_prune_cover_pulled_layers(tmp_path):
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        with oci_registry.start_registry(tmp_path / "reg") as reg, current(srv):
            oci_registry.push_image("layered:1", tmp_path / "layout", reg)
            tag = f"{reg.address}/layered:1"
            _run(modal.Image.from_registry(tag), "namespaces", sh_fn(), "true")
            reg.stop()  # a pulled tag is cached like any step: the registry is not asked again
            image = modal.Image.from_registry(tag)
            assert _run(image, "namespaces", sh_fn(), "cat /opt/data/a.txt") == "a"
            with pytest.raises(ImageBuildError, match="cannot be reached"):
                _run(modal.Image.from_registry(tag, force_build=True), "namespaces", sh_fn(),
                     "true")
            listed = srv.cli("image", "list")
            assert listed.returncode == 0, listed.stderr
            for n in range(1, 5):
                assert f"{tag} layer {n}/4" in listed.stdout
            assert f"from_registry {tag}" in listed.stdout
            layers = _layers(srv)
            assert len(layers) == 5  # four OCI layers and the pull's record
            blobs = srv.state_dir / "images" / "oci" / "blobs"
            assert any(blobs.rglob("*")) and not list((blobs.parent).glob("pull-*"))
            pruned = srv.cli("image", "prune")
            assert pruned.returncode == 0, pruned.stderr
            assert _layers(srv) == set()
            assert not blobs.exists()  # the pulls' download cache goes with them
    finally:
        srv.stop()
