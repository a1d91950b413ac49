"""A client environment for a second workspace on a test server, to check isolation."""

import subprocess
import sys

_tokens: dict[str, str] = {}


def other_workspace_env(server) -> dict[str, str]:
    """Environment variables of a client whose token belongs to workspace 'other'."""
    key = str(server.state_dir)
    if key not in _tokens:
        out = subprocess.run(
            [sys.executable, "-m", "firebox.cli.main", "token", "create", "--workspace", "other",
             "--state-dir", key], capture_output=True, text=True, env=server.env(), check=True,
        )
        _tokens[key] = out.stdout.strip().splitlines()[-1]
    return server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": _tokens[key]}


def run_python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firebox.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60)
