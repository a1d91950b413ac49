"""A workspace's default isolation: its functions' containers get it unless they choose."""

import json
import shutil
import subprocess
import sys

import pytest
from other_workspace import other_workspace_env, run_cli

APP = """
import firebox
app = firebox.App("ws-isolation")

@app.function(serialized=True)
def kernel():
    import os
    return os.environ.get("FIREBOX_ISOLATION"), open("/proc/version").read()

with app.run(show_logs=False):
    print(json.dumps(kernel.remote()))
"""


def run_app(env):
    out = subprocess.run([sys.executable, "-c", "import json\n" + APP], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not shutil.which("runsc"), reason="needs gVisor's runsc")
def test_workspace_default_isolation_applies_to_its_functions_only(server):
    env = other_workspace_env(server)
    shown = run_cli(env, "workspace", "set", "--isolation", "gvisor")
    assert shown.returncode == 0, shown.stderr
    assert "isolation: gvisor" in shown.stdout
    try:
        mode, version = run_app(env)
        assert mode == "gvisor"
        assert version != open("/proc/version").read()  # gVisor's own kernel
        # The main workspace still gets the server's default.
        main_env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
        assert run_app(main_env)[0] == "namespaces"
    finally:
        reset = run_cli(env, "workspace", "set", "--isolation", "default")
    assert "the server default" in reset.stdout
    assert run_app(env)[0] == "namespaces"


def test_an_unknown_isolation_is_refused(server):
    env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    out = run_cli(env, "workspace", "set", "--isolation", "chroot")
    assert out.returncode != 0
    assert "chroot" in out.stderr
