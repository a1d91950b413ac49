"""`firebox run` as a user types it: its own --help, parameters typed by Modal's rules, progress
on stderr, and what Ctrl-C says about the inputs in flight."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from test_cli import client_env, firebox_run, unconfigured_env

APP = "tests/apps/run_rules.py"


def test_run_help_describes_run_itself(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "firebox.cli.main", "run", "--help"],
                            env=unconfigured_env(tmp_path), capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "No such file" not in result.stdout + result.stderr
    assert "Run APP_REF" in result.stdout
    assert "--detach" in result.stdout


def test_unannotated_parameters_take_their_defaults_type(tmp_path: Path):
    result = firebox_run(tmp_path, f"{APP}::main", "--n", "3", "--loud")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "3 'w' True"
    result = firebox_run(tmp_path, f"{APP}::scale", "--x", "3", "--factor", "1.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "4.5"


def test_run_reports_progress_on_stderr_and_keeps_stdout_for_the_user(tmp_path: Path):
    result = firebox_run(tmp_path, f"{APP}::main")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 'w' False\n"
    lines = [line for line in result.stderr.splitlines() if line.startswith("✓")]
    assert lines[0].startswith("✓ Initialized app ap-")
    assert lines[-1] == "✓ App completed."


def test_ctrl_c_says_what_happened_to_the_inputs_in_flight(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "firebox.cli.main", "run", f"{APP}::slow"],
        env=unconfigured_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "calling\n"
    time.sleep(1)  # the call is in flight
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Aborted!" not in err
    assert "was stopped, so inputs in flight were cancelled" in err
    assert "Use --detach to let them finish." in err


def test_a_file_with_two_apps_says_to_name_one_and_runs_the_one_named(tmp_path: Path):
    result = firebox_run(tmp_path, "tests/apps/two_apps.py")
    assert result.returncode == 2
    assert ("tests/apps/two_apps.py defines several apps (first, second); say which with "
            "tests/apps/two_apps.py::first.") in result.stderr
    result = firebox_run(tmp_path, "tests/apps/two_apps.py::second", "--who", "ann")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "greetings, ann\n"
    result = firebox_run(tmp_path, "tests/apps/two_apps.py::first.hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from first\n"


def test_stopping_a_stopped_app_says_so(server):
    assert server.cli("deploy", "tests/apps/two_apps.py::second").returncode == 0
    first = server.cli("app", "stop", "second")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Stopped ap-")
    again = server.cli("app", "stop", "second")
    assert again.returncode == 0, again.stderr
    app_id = first.stdout.split()[1].rstrip(".")
    assert again.stdout.strip() == (
        f"App {app_id} was already stopped; nothing to do (`firebox app list` shows the apps).")


def test_a_run_that_failed_to_start_leaves_no_app_behind(server, tmp_path: Path):
    path = tmp_path / "too_big.py"
    path.write_text("import firebox\napp = firebox.App('too-big-to-run')\n\n"
                    "@app.function(cpu=4096)\ndef f():\n    return 1\n")
    result = server.cli("run", str(path))
    assert result.returncode == 1
    assert "can never run here" in result.stderr
    listed = json.loads(server.cli("app", "list", "--json").stdout)
    assert "too-big-to-run" not in [a["name"] for a in listed], listed


def test_a_class_method_takes_the_class_parameters_as_options_too(tmp_path: Path):
    result = firebox_run(tmp_path, f"{APP}::Scaler.times", "--x", "2", "--k", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "10"
    result = firebox_run(tmp_path, f"{APP}::Scaler.times", "--x", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "6"


PACKAGE_APP = """if True:
    import firebox

    from .helpers import double

    app = firebox.App("test-run-module")

    @app.function()
    def twice(x):
        return double(x)

    @app.local_entrypoint()
    def main(x: int = 4):
        print("got", twice.remote(x))
"""


def test_run_and_deploy_take_a_module_path(server, tmp_path: Path):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "firebox.cli.main", *args],
                              env=client_env(server), capture_output=True, text=True,
                              timeout=90, cwd=tmp_path)

    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (package / "app.py").write_text(PACKAGE_APP)  # a relative import: only a module path works

    with_m = cli("run", "-m", "mypkg.app", "--x", "5")
    assert with_m.returncode == 0, with_m.stderr
    assert with_m.stdout.splitlines()[-1] == "got 10"
    dotted = cli("run", "mypkg.app::main")  # not a file: a module path
    assert dotted.returncode == 0, dotted.stderr
    assert dotted.stdout.splitlines()[-1] == "got 8"
    deployed = cli("deploy", "-m", "mypkg.app")
    assert deployed.returncode == 0, deployed.stderr

    missing = cli("run", "-m", "mypkg.nope")
    assert missing.returncode == 2
    assert "No module named 'mypkg.nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
