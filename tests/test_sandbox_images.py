"""Sandbox.create(image=) with any firebox.Image, built as a function's is: its Python packages
importable by the sandbox's `python`, its files at their paths, its environment and workdir the
commands' defaults; and a snapshot of such a sandbox keeps all of it."""

from __future__ import annotations

import pytest
from conftest import ServerProcess, current

import firebox as modal
from firebox.exception import InvalidError, NotFoundError
from firebox.sdk.sandbox import SandboxImage

IMAGE = (modal.Image.debian_slim()
         .pip_install("six==1.17.0")
         .run_commands("mkdir -p /opt/tool && echo built > /opt/tool/marker")
         .env({"TOOL_MODE": "fast"})
         .workdir("/opt/tool"))


@pytest.fixture(scope="module", params=["default", "namespaces"])
def app(request, server, tmp_path_factory):
    """On the session's server (gVisor where runsc is installed), then on one whose sandboxes
    are bubblewrap's namespaces."""
    if request.param == "default":
        yield modal.App.lookup("sandbox-image-tests", create_if_missing=True)
        return
    srv = ServerProcess(tmp_path_factory.mktemp("ns-image-server"),
                        extra_env={"FIREBOX_SANDBOX_ISOLATION": "namespaces"})
    srv.start()
    with current(srv):
        yield modal.App.lookup("sandbox-image-tests", create_if_missing=True)
    srv.stop()


@pytest.fixture(scope="module")
def sb(app):
    sandbox = modal.Sandbox.create(app=app, image=IMAGE)
    yield sandbox
    sandbox.terminate()


def _run(sb: modal.Sandbox, *args: str) -> str:
    p = sb.exec(*args)
    out = p.stdout.read()
    assert p.wait() == 0, p.stderr.read()
    return out


def test_image_packages_files_env_and_workdir(sb):
    assert _run(sb, "python", "-c", "import six; print(six.__version__)") == "1.17.0\n"
    assert _run(sb, "cat", "/opt/tool/marker") == "built\n"
    assert _run(sb, "sh", "-c", 'echo "$TOOL_MODE $PWD"') == "fast /opt/tool\n"
    # The image's writes are under the sandbox's own: it may change them, the image keeps them.
    _run(sb, "sh", "-c", "echo changed > /opt/tool/marker")
    assert _run(sb, "cat", "/opt/tool/marker") == "changed\n"


def test_a_new_sandbox_sees_the_image_not_another_sandboxes_writes(app, sb):
    _run(sb, "sh", "-c", "echo mine > /opt/tool/other")
    fresh = modal.Sandbox.create(app=app, image=IMAGE, env={"TOOL_MODE": "slow"})
    try:
        assert _run(fresh, "cat", "/opt/tool/marker") == "built\n"
        assert _run(fresh, "sh", "-c", "ls /opt/tool; echo $TOOL_MODE") == "marker\nslow\n"
    finally:
        fresh.terminate()


def test_snapshot_of_an_image_sandbox_keeps_the_image(app):
    first = modal.Sandbox.create(app=app, image=IMAGE)
    try:
        _run(first, "sh", "-c", "echo kept > /opt/tool/state")
        snapshot = first.snapshot_filesystem()
    finally:
        first.terminate()
    second = modal.Sandbox.create(app=app, image=snapshot)
    try:
        assert _run(second, "cat", "/opt/tool/state", "/opt/tool/marker") == "kept\nbuilt\n"
        assert _run(second, "python", "-c", "import six; print(six.__name__)") == "six\n"
    finally:
        second.terminate()


def test_a_command_sandbox_runs_in_the_image(app):
    sb = modal.Sandbox.create("python", "-c", "import six, os; print(os.getcwd())",
                              app=app, image=IMAGE)
    sb.wait()
    assert sb.returncode == 0, sb.stderr.read()
    assert sb.stdout.read() == "/opt/tool\n"


def test_an_image_of_python_packages_only(app):
    # Its one layer has python/ and nothing at absolute paths (no root/ nor upper/).
    sb = modal.Sandbox.create("python", "-c", "import six; print(six.__version__)", app=app,
                              image=modal.Image.debian_slim().pip_install("six==1.17.0"))
    sb.wait()
    assert (sb.returncode, sb.stdout.read()) == (0, "1.17.0\n"), sb.stderr.read()


def test_bad_images_are_refused_with_what_to_pass(app):
    with pytest.raises(InvalidError, match="takes a firebox.Image or a snapshot"):
        modal.Sandbox.create(app=app, image="debian:bookworm")
    unknown = SandboxImage("im-000000000000000000000000")  # as Image.from_id would name one
    with pytest.raises(NotFoundError, match="No image im-0+ in this workspace"):
        modal.Sandbox.create(app=app, image=unknown)


def test_prune_keeps_the_image_of_a_running_sandbox(sb):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "firebox.cli.main", "image", "prune"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _run(sb, "python", "-c", "import six; print(six.__version__)") == "1.17.0\n"
    assert _run(sb, "cat", "/opt/tool/marker") in ("built\n", "changed\n")
