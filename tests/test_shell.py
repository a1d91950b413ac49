"""`firebox container exec`, run as a user would against a real server: commands run inside a
function's own container (its files and secrets), exit with the command's status, and another
workspace cannot reach in."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import eventually
from other_workspace import other_workspace_env, run_cli

WARM_APP = """if True:
    import firebox
    app = firebox.App("test-shell-exec")

    @app.cls(min_containers=1, secrets=[firebox.Secret.from_dict({"SECRET_VALUE": "s3cr3t"})])
    class Warm:
        @firebox.enter()
        def start(self):
            with open("/tmp/only-in-this-container", "w") as f:
                f.write("written by the container's enter hook\\n")

        @firebox.method()
        def ping(self):
            return "pong"
"""


def _ready_container(server, app: str) -> str:
    def ready() -> list[str]:
        rows = json.loads(server.cli("container", "list", "--json").stdout)
        return [r["container_id"] for r in rows if r["app"] == app and r["state"] == "ready"]

    found = eventually(ready, timeout=30)
    assert found, server.cli("container", "list").stdout
    return found[0]


def test_container_exec_runs_inside_the_container(server, tmp_path: Path):
    path = tmp_path / "warm.py"
    path.write_text(WARM_APP)
    deployed = server.cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    try:
        cid = _ready_container(server, "test-shell-exec")
        seen = server.cli("container", "exec", cid, "--", "sh", "-c",
                          "cat /tmp/only-in-this-container; echo secret=$SECRET_VALUE; "
                          "echo oops >&2; exit 3")
        assert seen.returncode == 3, seen.stderr
        assert seen.stdout == "written by the container's enter hook\nsecret=s3cr3t\n"
        assert seen.stderr == "oops\n"

        # stdin goes to the command.
        piped = server.cli("container", "exec", cid, "--", "tr", "a-z", "A-Z", input="hello\n")
        assert (piped.returncode, piped.stdout) == (0, "HELLO\n"), piped.stderr

        missing = server.cli("container", "exec", cid, "--", "no-such-command")
        assert missing.returncode == 127 and "no-such-command" in missing.stderr

        # Another workspace cannot reach into it.
        refused = run_cli(other_workspace_env(server), "container", "exec", cid, "--", "true")
        assert refused.returncode == 1
        assert "No running container" in refused.stderr
        assert "`firebox container list`" in refused.stderr
    finally:
        server.cli("app", "stop", "test-shell-exec")
    gone = server.cli("container", "exec", cid, "--", "true")
    assert gone.returncode == 1 and "`firebox container list`" in gone.stderr
    assert "Traceback" not in gone.stderr

