"""Packaging: pyproject.toml asks for ranges and uv.lock holds the exact versions inside them;
a client's install (`pip install firebox`, without the `server` extra) deploys, calls and lists
against a real server, and where it would need the server's packages it says in a line what to
install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import firebox.server

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCK = tomllib.loads((REPO / "uv.lock").read_text())["package"]

REQUIREMENTS = [(group, Requirement(line)) for group, lines in
                [("dependencies", PYPROJECT["dependencies"]),
                 *PYPROJECT["optional-dependencies"].items()]
                for line in lines]
SERVER_EXTRA = sorted(canonicalize_name(Requirement(line).name).replace("-", "_")
                      for line in PYPROJECT["optional-dependencies"]["server"])

# A Python whose import system refuses the server extra's packages, as a client's install would.
REFUSE = f"""if True:
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {set(SERVER_EXTRA)!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, Refuse())
"""
CLI = REFUSE + "import runpy; runpy.run_module('firebox.cli.main', run_name='__main__', " \
               "alter_sys=True)"


def client(env: dict[str, str], *args: str, code: str = CLI) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_every_dependency_is_a_range_with_the_locked_version_inside_it():
    locked = {canonicalize_name(p["name"]): p["version"] for p in LOCK}
    for group, req in REQUIREMENTS:
        operators = {spec.operator for spec in req.specifier}
        assert operators == {">=", "<"}, f"{req} ({group}) should be a range: >=floor,<ceiling"
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} ({group}) is not in uv.lock: run `uv lock`"
        assert req.specifier.contains(version, prereleases=True), (req, version)


def test_the_lock_was_made_from_this_pyproject():
    # What `uv sync --locked` (scripts/install.sh) checks before it installs anything.
    project = next(p for p in LOCK if p["name"] == "firebox")
    in_lock = {(canonicalize_name(r["name"]), SpecifierSet(r.get("specifier", "")),
                r.get("marker", "")) for r in project["metadata"]["requires-dist"]}
    in_pyproject = {(canonicalize_name(req.name), req.specifier,
                     "" if group == "dependencies" else f"extra == '{group}'")
                    for group, req in REQUIREMENTS}
    assert in_lock == in_pyproject, "uv.lock is out of date: run `.venv/bin/uv lock`"
    assert set(project["metadata"]["provides-extras"]) == set(PYPROJECT["optional-dependencies"])


def test_the_server_checks_for_every_package_of_its_extra():
    assert sorted(firebox.server.PACKAGES) == SERVER_EXTRA
    assert not any(canonicalize_name(req.name).replace("-", "_") in SERVER_EXTRA
                   for req in map(Requirement, PYPROJECT["dependencies"]))


def test_a_client_install_deploys_calls_and_lists_against_a_server(server, tmp_path: Path):
    app = tmp_path / "laptop.py"
    app.write_text("import firebox\n\napp = firebox.App('test-packaging')\n\n\n"
                   "@app.function()\ndef double(x):\n    return 2 * x\n")
    env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}

    deployed = client(env, "deploy", str(app))
    assert deployed.returncode == 0, deployed.stderr
    assert "Deployed app 'test-packaging'" in deployed.stdout

    called = client(env, code=REFUSE + "import firebox\n"
                    "print(firebox.Function.from_name('test-packaging', 'double').remote(21))\n")
    assert called.returncode == 0, called.stderr
    assert called.stdout == "42\n"

    listed = client(env, "app", "list")
    assert listed.returncode == 0, listed.stderr
    assert "test-packaging" in listed.stdout


def test_what_needs_the_server_says_in_a_line_to_install_its_extra(tmp_path: Path):
    # No server configured, so `firebox run` would start an embedded one.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FIREBOX_CONFIG_DIR": str(tmp_path)}
    state = str(tmp_path / "state")
    missing = ("Error: The firebox server's packages are not installed here (a2wsgi, aiosqlite, "
               "alembic and 10 more missing): pip install 'firebox[server]'.")
    expected = {
        ("run", "examples/hello.py"): "Error: No server is configured and the embedded one "
        "cannot start: " + missing.removeprefix("Error: ") + " Or point this client at a server: "
        "firebox token set --server URL --token TOKEN.",
        ("server", "--port", "0", "--state-dir", state): missing,
        ("token", "create", "--state-dir", state): missing,
    }
    for args, line in expected.items():
        result = client(env, *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n"), args
