"""The `firebox` command against a real server: deploy, call by name from other processes,
app list/stop/logs/history, and `firebox run` with an embedded server and no config."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import REPO
from helpers import eventually, runtime_pids


def client_env(server) -> dict[str, str]:
    env = server.env()
    env.update({"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token})
    return env


def python(server, code: str) -> str:
    """Run code in another Python process that talks to server; its stdout."""
    result = subprocess.run([sys.executable, "-c", code], env=client_env(server),
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_deploy_then_call_by_name_from_another_process(server):
    result = server.cli("deploy", "tests/apps/deployed.py")
    assert result.returncode == 0, result.stderr
    assert "test-deployed" in result.stdout
    out = python(server, """if True:
        import firebox
        print(firebox.Function.from_name("test-deployed", "greet").remote("ann"))
        print(firebox.Cls.from_name("test-deployed", "Greeter")().greet.remote("bob"))
        print(firebox.Cls.from_name("test-deployed", "Greeter")(greeting="yo").greet.remote("cy"))
    """)
    assert out.splitlines() == ["hello ann", "hi bob!", "yo cy!"]


def test_redeploy_replaces_the_code(server, tmp_path: Path):
    source = """if True:
        import firebox
        app = firebox.App("test-redeploy")

        @app.function()
        def version():
            return VERSION
    """
    path = tmp_path / "versioned.py"
    call = 'import firebox; print(firebox.Function.from_name("test-redeploy", "version").remote())'
    for version in ("one", "two"):
        path.write_text(source.replace("VERSION", repr(version)))
        result = server.cli("deploy", str(path))
        assert result.returncode == 0, result.stderr
        assert python(server, call).strip() == version


def history_rows(table: str) -> list[str]:
    """The rows of `app history`'s table, each in one line: a row starts with its date, and a
    detail too long for its column goes on in the lines below."""
    rows: list[str] = []
    for line in table.splitlines():
        if line[:1].isdigit():
            rows.append(line)
        elif rows and line.startswith(" "):
            rows[-1] += " " + line.strip()
    return rows


def test_a_deploy_tag_is_kept_in_the_history(server):
    for tag in ("v1", ""):
        result = server.cli("deploy", "tests/apps/deployed.py", "--name", "test-tagged",
                            *(["--tag", tag] if tag else []))
        assert result.returncode == 0, result.stderr
    history = server.cli("app", "history", "test-tagged", "--events")
    assert history.returncode == 0, history.stderr
    deploys = [row for row in history_rows(history.stdout) if " deployed " in row]
    assert len(deploys) == 2 and "tag=v1" in deploys[0] and "tag=" not in deploys[1]


def test_app_list_logs_history_and_stop(server):
    result = server.cli("deploy", "tests/apps/deployed.py", "--name", "test-app-commands")
    assert result.returncode == 0, result.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "app", "logs", "-f", "test-app-commands"],
        env=client_env(server), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO,
    )
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        python(server, 'import firebox; '
                       'firebox.Function.from_name("test-app-commands", "greet").remote("dee")')
        assert eventually(lambda: any("greeting dee" in line for line in followed),
                          timeout=30), followed

        listed = server.cli("app", "list")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if "test-app-commands" in line)
        assert "deployed" in row

        logs = server.cli("app", "logs", "test-app-commands")
        assert logs.returncode == 0, logs.stderr
        assert "[greet] greeting dee" in logs.stdout

        stopped = server.cli("app", "stop", "test-app-commands")
        assert stopped.returncode == 0, stopped.stderr
        # `app logs -f` ends by itself once the app has stopped.
        assert follower.wait(30) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
    reader.join(5)
    assert any("[greet] greeting dee" in line for line in followed)

    listed = server.cli("app", "list")
    row = next(line for line in listed.stdout.splitlines() if "test-app-commands" in line)
    assert "stopped" in row
    history = server.cli("app", "history", "test-app-commands", "--events")
    assert history.returncode == 0, history.stderr
    kinds = [row.split()[2] for row in history_rows(history.stdout)]
    assert kinds[0] == "created" and "deployed" in kinds and kinds[-1] == "stopped"
    refused = python_fails(server, 'import firebox; '
                           'firebox.Function.from_name("test-app-commands", "greet").remote("x")')
    assert "NotFoundError" in refused and "firebox deploy" in refused


def python_fails(server, code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=client_env(server),
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    return result.stderr


# ---- firebox run with no server configured ---------------------------------------------------


def unconfigured_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), FIREBOX_CONFIG_DIR=str(tmp_path / "home" / "cfg"),
               TMPDIR=str(tmp_path / "tmp"))
    return env


def firebox_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "run", *args], env=unconfigured_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    # A lingering server thread or container would keep the command from exiting.
    out, err = proc.communicate(timeout=90)
    leftover = runtime_pids(FIREBOX_CONTAINER_ROOT=str(tmp_path / "tmp"))
    assert not leftover, "containers outlived `firebox run`"
    assert list((tmp_path / "tmp").iterdir()) == [], "the embedded server left files behind"
    assert not (tmp_path / "home" / "cfg" / "config.toml").exists()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_run_entrypoint_with_embedded_server(tmp_path: Path):
    result = firebox_run(tmp_path, "tests/apps/cli_app.py", "--n", "5", "--loud")
    assert result.returncode == 0, result.stderr
    assert "results: W0,W1,W2,W3,W4 loud" in result.stdout
    for i in range(5):
        assert f"[shout] shouting w{i}" in result.stdout


def test_run_named_entrypoint_and_function(tmp_path: Path):
    result = firebox_run(tmp_path, "tests/apps/cli_app.py::main", "--n", "1", "--no-loud")
    assert result.returncode == 0, result.stderr
    assert "results: W0 quiet" in result.stdout
    result = firebox_run(tmp_path, "tests/apps/cli_app.py::triple", "--x", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "9"


def test_run_help_shows_the_entrypoint_options(tmp_path: Path):
    result = firebox_run(tmp_path, "tests/apps/cli_app.py", "--help")
    assert result.returncode == 0, result.stderr
    assert "Shout N words." in result.stdout
    assert "--n INTEGER" in result.stdout
    assert "--loud / --no-loud" in result.stdout


def test_run_without_a_required_option_says_which(tmp_path: Path):
    result = firebox_run(tmp_path, "tests/apps/cli_app.py::triple")
    assert result.returncode == 2
    assert "Missing option '--x'" in result.stderr


def test_a_server_with_an_unknown_backend_says_which_there_are(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "firebox.cli.main", "server", "--backend", "ray",
         "--state-dir", str(tmp_path / "state"), "--port", "0"],
        env=unconfigured_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "firebox: there is no backend named 'ray'; choose one of 'local'.")
    assert not (tmp_path / "state").exists()  # refused before anything was made
