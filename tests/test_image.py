"""Images: built on the control plane into cached layers, seen by the functions' containers."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import httpx
import pytest
from apps import images as im
from other_workspace import other_workspace_env, run_cli, run_python

import firebox
from firebox.exception import ImageBuildError, InvalidError

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@needs_bwrap
def test_function_runs_in_its_image(server, capfd):
    with im.app.run():
        seen = im.probe.remote()
        plain = im.plain.remote()
    assert seen["six"] == "1.17.0" and seen["tabulate"] == "0.9.0"
    assert importlib.util.find_spec("tabulate") is None  # the host's environment has none
    assert plain == "no tabulate"  # a function with another image does not see the package
    assert seen["greeting"] == "hello"
    assert seen["cwd"] == "/opt/made"
    assert seen["marker"] == "built hello\n"  # the image's env reached its later build step
    assert not Path("/opt/made").exists()  # run_commands wrote into the image, not the host
    assert seen["baked"] == "alpha\n"
    assert seen["baked_dir"] == ["a.txt", "sub", "sub/b.txt"]
    assert seen["live_file"] == "alpha\n"
    assert seen["live_dir"] == ["a.txt", "sub", "sub/b.txt"]
    assert seen["imghelper"] == "from imghelper"
    err = capfd.readouterr().err
    assert "[image] step 1/" in err and "pip_install six==1.17.0" in err


@pytest.mark.skipif(shutil.which("runsc") is None, reason="needs gVisor")
def test_gvisor_containers_run_in_the_image_too(server):
    with im.app.run():
        seen = im.probe_gvisor.remote()
    assert seen["six"] == "1.17.0" and seen["marker"] == "built hello\n"
    assert seen["cwd"] == "/opt/made" and seen["imghelper"] == "from imghelper"
    assert seen["live_dir"] == ["a.txt", "sub", "sub/b.txt"]


@needs_bwrap
def test_image_build_builds_ahead_of_the_app(server, capfd):
    image = firebox.Image.debian_slim().run_commands("echo ahead > /opt/ahead.txt")
    assert image.build() is image
    assert ": building" in capfd.readouterr().err
    app = firebox.App("test-image-build-ahead", image=image)
    assert app.image is image

    @app.function(serialized=True)
    def read():
        return open("/opt/ahead.txt").read()

    with app.run():
        assert read.remote() == "ahead\n"
    err = capfd.readouterr().err
    assert ": cached" in err and ": building" not in err  # the build above did the work


@needs_bwrap
def test_unchanged_image_does_no_work(server, capfd):
    with im.app.run():
        im.probe.remote()
    capfd.readouterr()
    with im.app.run():
        assert im.probe.remote()["marker"] == "built hello\n"
    err = capfd.readouterr().err
    assert ": cached" in err
    assert ": building" not in err


@needs_bwrap
def test_changing_a_step_rebuilds_it_and_the_steps_after(server, capfd):
    def image(middle):
        return (firebox.Image.debian_slim().pip_install("six==1.17.0")
                .run_commands(f"mkdir -p /opt/t && echo {middle} > /opt/t/mid")
                .run_commands("cat /opt/t/mid > /opt/t/last"))

    def run(img):
        app = firebox.App("test-images-change")

        @app.function(image=img, serialized=True)
        def last():
            return open("/opt/t/last").read()

        with app.run():
            return last.remote()

    assert run(image("one")) == "one\n"
    capfd.readouterr()
    assert run(image("two")) == "two\n"
    err = capfd.readouterr().err
    assert "step 1/3 pip_install six==1.17.0: cached" in err
    assert "step 2/3 run_commands mkdir -p /opt/t && echo two > /opt/t/mid: building" in err
    assert "step 3/3 run_commands cat /opt/t/mid > /opt/t/last: building" in err


def test_process_isolation_applies_the_python_layers(server):
    with im.app.run():
        seen = im.unisolated.remote()
    assert seen == {"six": "1.17.0", "marker": "FileNotFoundError"}


@needs_bwrap
def test_apt_install_is_in_the_container_and_not_on_the_host(server):
    with im.apt_app.run():
        path, banner = im.figlet.remote("hi")
    assert path == "/usr/bin/figlet"
    assert "|_|" in banner
    assert shutil.which("figlet") is None
    assert not Path("/usr/bin/figlet").exists()


@needs_bwrap
def test_a_failing_step_raises_image_build_error_with_its_log(server):
    with pytest.raises(ImageBuildError) as info:
        with im.bad_app.run():
            pass
    message = str(info.value)
    assert "step 2" in message and "run_commands echo about-to-fail; exit 3" in message
    assert "about-to-fail" in message.split("log ends:")[1]
    assert "exited with code 3" in message


def test_a_build_step_after_a_start_time_add_needs_copy_true(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("x")
    img = firebox.Image.debian_slim().add_local_file(f, "/root/x.txt")
    with pytest.raises(InvalidError, match="copy=True"):
        img.pip_install("six")
    assert firebox.Image.debian_slim().add_local_file(f, "/root/x.txt", copy=True).pip_install(
        "six") is not None


def test_debian_slim_takes_only_this_python():
    import sys

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    firebox.Image.debian_slim(python_version=here)
    with pytest.raises(InvalidError, match=f"this machine's Python, {here}"):
        firebox.Image.debian_slim(python_version="2.7")


def test_requirements_and_pyproject_become_pip_steps(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["six==1.17.0"]\n'
        '[project.optional-dependencies]\nextra = ["tomli"]\n'
    )
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    img = (firebox.Image.debian_slim()
           .pip_install_from_pyproject(str(tmp_path / "pyproject.toml"),
                                       optional_dependencies=["extra"])
           .uv_pip_install(requirements=[str(tmp_path / "requirements.txt")], pre=True)
           .pip_install_from_requirements(str(tmp_path / "requirements.txt")))
    steps = img._build_request()["steps"]
    assert steps[0]["packages"] == ["six==1.17.0", "tomli"]
    assert steps[1]["requirements"] == ["six==1.17.0\n"] and steps[1]["pre"] is True
    assert steps[2]["requirements"] == ["six==1.17.0\n"]


def test_imports_ignores_missing_modules_locally():
    with firebox.Image.debian_slim().imports():
        import a_module_that_is_not_installed  # noqa: F401
    with pytest.raises(ZeroDivisionError), firebox.Image.debian_slim().imports():
        1 / 0  # noqa: B018


@needs_bwrap
def test_build_commands_cannot_make_device_nodes(server):
    app = firebox.App("test-images-mknod")

    @app.function(image=firebox.Image.debian_slim().run_commands("mknod /tmp/disk b 8 0"),
                  serialized=True)
    def nothing():
        pass

    with pytest.raises(ImageBuildError, match="Operation not permitted"):
        with app.run():
            pass


def test_another_workspace_neither_sees_nor_prunes_the_images(server):
    theirs = other_workspace_env(server)
    assert json.loads(run_cli(theirs, "image", "list", "--json").stdout) == []
    assert run_cli(theirs, "image", "prune").returncode == 0
    assert json.loads(server.cli("image", "list", "--json").stdout)


@needs_bwrap
def test_a_build_step_is_held_to_its_memory_limit(tmp_path):
    from conftest import ServerProcess

    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_IMAGE_BUILD_MEMORY_MB": "64"})
    srv.start()
    try:
        env = srv.env() | {"FIREBOX_SERVER_URL": srv.url, "FIREBOX_TOKEN": srv.token}
        out = run_python(env, """
import firebox
image = firebox.Image.debian_slim().run_commands(
    "python3 -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'")
app = firebox.App("test-images-memory")
@app.function(image=image, serialized=True)
def f():
    pass
with app.run(show_logs=False):
    pass
""")
        assert out.returncode != 0
        assert "more than 64 MiB" in out.stderr and "FIREBOX_IMAGE_BUILD_MEMORY_MB" in out.stderr
    finally:
        srv.stop()


@needs_bwrap
def test_a_workspace_never_gets_another_workspaces_layers(server):
    """The same recipe builds apart per workspace: a layer (and the uv cache a package's build
    script may have left things in) is never handed from one tenant to another."""
    code = """
import firebox
image = firebox.Image.debian_slim().run_commands("echo same recipe > /opt/same")
app = firebox.App("test-images-apart")
@app.function(image=image, serialized=True)
def probe():
    return open("/opt/same").read()
with app.run(show_logs=False):
    print(probe.remote().strip())
"""
    ours = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    theirs = other_workspace_env(server)
    for env in (ours, theirs):
        out = run_python(env, code)
        assert out.returncode == 0 and out.stdout.strip() == "same recipe", out.stderr

    def layers(env: dict[str, str]) -> set[str]:
        listed = json.loads(run_cli(env, "image", "list", "--json").stdout)
        return {layer["id"] for image in listed for layer in image["layers"]}

    assert layers(ours) and layers(theirs)
    assert not layers(ours) & layers(theirs)
    assert run_cli(theirs, "image", "prune").returncode == 0


@needs_bwrap
def test_a_deployed_image_outlives_a_restart_and_a_prune(own_server):
    deployed = own_server.cli("deploy", "tests/apps/images.py::app", timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    assert "=> Image step " in deployed.stderr and "✓ Built image im-" in deployed.stderr
    own_server.kill()
    own_server.start()
    assert own_server.cli("image", "prune").returncode == 0
    listed = json.loads(own_server.cli("image", "list", "--json").stdout)
    assert len(listed) == 3 and all(image["in_use"] for image in listed)  # full, pip, base
    env = own_server.env() | {"FIREBOX_SERVER_URL": own_server.url,
                              "FIREBOX_TOKEN": own_server.token}
    code = ("import firebox; "
            "print(firebox.Function.from_name('test-images', 'probe').remote()['marker'])")
    out = run_python(env, code)
    assert out.stdout.strip() == "built hello", out.stderr


def test_a_function_can_name_only_images_its_workspace_built(server):
    headers = {"Authorization": f"Bearer {server.token}"}
    app_id = httpx.post(f"{server.url}/v1/apps", json={"name": "forged"},
                        headers=headers).json()["app_id"]
    forged = {"name": "f", "spec": {"kind": "function", "module": "m", "qualname": "f",
                                    "image": {"image_id": "im-forged",
                                              "layers": ["../../../../etc"]}}}
    resp = httpx.post(f"{server.url}/v1/apps/{app_id}/functions",
                      json={"functions": [forged]}, headers=headers)
    assert resp.status_code == 400
    assert "was not built in this workspace" in resp.json()["error"]


def test_image_list_and_prune(server):
    listed = json.loads(server.cli("image", "list", "--json").stdout)
    assert listed, "the tests before built images"
    labels = {layer["label"] for image in listed for layer in image["layers"]}
    assert "pip_install six==1.17.0" in labels
    assert not any(image["in_use"] for image in listed)  # their apps stopped
    text = server.cli("image", "list").stdout
    assert listed[0]["image_id"] in text
    layers = server.state_dir / "images" / "layers"
    assert any(layers.iterdir())
    pruned = server.cli("image", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert f"Removed {len(listed)} images" in pruned.stdout
    assert json.loads(server.cli("image", "list", "--json").stdout) == []
    assert not any(layers.iterdir())


def test_pip_steps_build_on_a_server_without_bubblewrap(tmp_path, monkeypatch):
    import asyncio

    from firebox.images import builder
    from firebox.store.blobs import BlobStore

    monkeypatch.setattr(builder, "can_contain", lambda: False)
    b = builder.Builder(tmp_path / "images", BlobStore(tmp_path / "blobs"), [])
    events = []

    async def emit(event):
        events.append(event)

    async def record(layer, info):
        pass

    step = {"kind": "pip", "packages": ["six==1.17.0"], "label": "pip_install six==1.17.0"}
    built = asyncio.run(b.build({"python": builder.host_python(), "steps": [step]}, emit,
                                record, "ws-test"))
    assert (b.path(built.layers[0]) / "python" / "six.py").is_file()
    assert any(e["t"] == "log" and "+ six==1.17.0" in e["text"] for e in events)
