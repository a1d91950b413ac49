"""`firebox run` as a user types it: its own --help and parameters typed by Modal's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO
from test_cli import firebox_run, unconfigured_env

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
