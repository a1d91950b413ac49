"""`firebox container exec` and `firebox shell`, run as a user would against a real server:
commands run inside a function's own container (its files, secrets and volumes), exit with the
command's status, and another workspace cannot reach in."""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import eventually
from other_workspace import other_workspace_env, run_cli

import firebox

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


def _containers(server, app: str, state: str = "ready") -> list[str]:
    rows = httpx.get(f"{server.url}/v1/containers", timeout=10,
                     headers={"Authorization": f"Bearer {server.token}"}).json()["containers"]
    return [r["container_id"] for r in rows if r["app"] == app and r["state"] == state]


def _ready_container(server, app: str) -> str:
    found = eventually(lambda: _containers(server, app), timeout=30)
    assert found, server.cli("container", "list").stdout
    return found[0]


def test_container_exec_runs_inside_the_container(server, tmp_path: Path):
    path = tmp_path / "warm.py"
    path.write_text(WARM_APP)
    deployed = server.cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    try:
        cid = _ready_container(server, "test-shell-exec")
        # What only the container sees; stdin goes to the command; its status is the CLI's.
        seen = server.cli("container", "exec", cid, "--", "sh", "-c",
                          "cat /tmp/only-in-this-container; echo secret=$SECRET_VALUE; "
                          "tr a-z A-Z; echo oops >&2; exit 3", input="hello\n")
        assert seen.returncode == 3, seen.stderr
        assert seen.stdout == "written by the container's enter hook\nsecret=s3cr3t\nHELLO\n"
        assert seen.stderr == "oops\n"

        # firebox shell CONTAINER_ID opens a shell there; --cmd runs one command instead.
        shell = server.cli("shell", cid, "--cmd", "cat /tmp/only-in-this-container; exit 5")
        assert (shell.returncode, shell.stdout) == (5, "written by the container's enter hook\n")

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


SHELL_APP = """if True:
    import firebox
    app = firebox.App("test-shell")
    data = firebox.Volume.from_name("test-shell-data", create_if_missing=True)

    @app.function(secrets=[firebox.Secret.from_dict({"SECRET_VALUE": "from-the-secret"})],
                  volumes={"/data": data})
    def fn():
        pass
"""


@pytest.fixture
def shell_app(server, tmp_path: Path) -> Path:
    """An app file whose function has a secret and a volume holding one file."""
    path = tmp_path / "shellapp.py"
    path.write_text(SHELL_APP)
    data = firebox.Volume.from_name("test-shell-data", create_if_missing=True)
    with data.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"hi\n"), "/seeded-by-the-test.txt")
    return path


def test_shell_cmd_exits_with_the_commands_status(server, shell_app: Path):
    ran = server.cli("shell", f"{shell_app}::fn", "--cmd",
                     "ls /data; echo secret=$SECRET_VALUE; exit 7")
    assert ran.returncode == 7, ran.stderr
    assert ran.stdout == "seeded-by-the-test.txt\nsecret=from-the-secret\n"
    # The container stopped with the shell: the app's run is over.
    assert not _containers(server, "test-shell")


def test_shell_without_ref_takes_volumes_secrets_and_resources(server, shell_app: Path):
    made = server.cli("secret", "create", "--force", "test-shell-named", "GREETING=hi-there")
    assert made.returncode == 0, made.stderr
    ran = server.cli("shell", "--secret", "test-shell-named", "--volume", "test-shell-data",
                     "--cpu", "0.5", "--memory", "256", "--cmd",
                     "echo $GREETING; ls /mnt/test-shell-data")
    assert (ran.returncode, ran.stdout) == (0, "hi-there\nseeded-by-the-test.txt\n"), ran.stderr
    # A function's own options apply with REF: one given too is refused, with why.
    mixed = server.cli("shell", f"{shell_app}::fn", "--cpu", "2")
    assert mixed.returncode == 2 and "--cpu is for a shell without REF" in mixed.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_shell_is_interactive_under_tmux(server, shell_app: Path, tmp_path: Path):
    env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    script = tmp_path / "open-shell.sh"
    script.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
                      + f"{shlex.quote(sys.executable)} -m firebox.cli.main shell "
                      f"{shlex.quote(str(shell_app))}::fn\necho SHELL-EXITED=$?\nsleep 60\n")
    tmux = ["tmux", "-L", f"firebox-test-{tmp_path.name}"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "30", "-s", "shell",
                    f"sh {shlex.quote(str(script))}"], check=True, env=env, cwd=tmp_path)

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "shell"], capture_output=True,
                              text=True).stdout

    try:
        def prompt() -> bool:
            lines = [line for line in pane().splitlines() if line.strip()]
            return bool(lines) and lines[-1].rstrip().endswith(("#", "$"))

        assert eventually(prompt, timeout=60), pane()
        subprocess.run([*tmux, "send-keys", "-t", "shell", "echo $SECRET_VALUE; ls /data",
                        "Enter"], check=True)
        assert eventually(lambda: "seeded-by-the-test.txt" in pane(), timeout=20), pane()
        assert "\nfrom-the-secret" in pane()
        # The shell's terminal has this one's size, and follows it when it changes.
        subprocess.run([*tmux, "resize-window", "-t", "shell", "-x", "100", "-y", "20"],
                       check=True)
        size = subprocess.run([*tmux, "display", "-p", "-t", "shell",
                               "#{pane_height} #{pane_width}"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert size.endswith(" 100"), size

        def sized() -> bool:  # the new size reaches the shell a moment later: ask until it has
            subprocess.run([*tmux, "send-keys", "-t", "shell", "clear; stty size", "Enter"],
                           check=True)
            return f"\n{size}\n" in "\n" + pane()

        assert eventually(sized, timeout=10, interval=0.5), pane()
        subprocess.run([*tmux, "send-keys", "-t", "shell", "exit", "Enter"], check=True)
        assert eventually(lambda: "SHELL-EXITED=0" in pane(), timeout=20), pane()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_shell_says_when_the_container_fails_to_start(server, tmp_path: Path):
    path = tmp_path / "failing.py"
    path.write_text("""if True:
    import firebox
    app = firebox.App("test-shell-failing")

    @app.function()
    def fn():
        pass

    if not firebox.is_local():
        raise RuntimeError("no shell for you")
""")
    ran = server.cli("shell", f"{path}::fn", "--cmd", "true")
    assert ran.returncode == 1
    error = ran.stderr.strip().splitlines()[-1]
    assert "exited before it was ready" in error and "`firebox container logs ta-" in error
    logs = server.cli("container", "logs", error.split("logs ")[1].split("`")[0])
    assert "RuntimeError: no shell for you" in logs.stderr
