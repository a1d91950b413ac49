"""`firebox app rollback`: every deploy is kept as a version, and an earlier one can be deployed
again, code and options included, as a new version in the history."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import httpx
import pytest

import firebox
from firebox.exception import NotFoundError

SOURCE = """if True:
    import firebox
    app = firebox.App("test-rollback")

    @app.function(timeout=TIMEOUT)
    def version():
        return VERSION
"""


def _deploy(server, path: Path, version: str, timeout: int) -> None:
    path.write_text(SOURCE.replace("VERSION", repr(version)).replace("TIMEOUT", str(timeout)))
    result = server.cli("deploy", str(path))
    assert result.returncode == 0, result.stderr


def _current() -> str:
    return firebox.Function.from_name("test-rollback", "version").remote()


def test_rollback_deploys_an_earlier_version_again(server, tmp_path: Path):
    path = tmp_path / "versioned.py"
    for version, timeout in (("one", 30), ("two", 40), ("three", 50)):
        _deploy(server, path, version, timeout)
    assert _current() == "three"

    back = server.cli("app", "rollback", "test-rollback")  # the one before the current
    assert back.returncode == 0, back.stderr
    assert "to v2; it is now at v4" in back.stdout
    assert _current() == "two"

    again = server.cli("app", "rollback", "test-rollback", "v1")
    assert again.returncode == 0, again.stderr
    assert "to v1; it is now at v5" in again.stdout
    assert _current() == "one"

    history = server.cli("app", "history", "test-rollback", "--events", "--json")
    assert history.returncode == 0, history.stderr
    events = [e for e in json.loads(history.stdout)["events"]
              if e["kind"] in ("deployed", "rolled back")]
    assert [(e["kind"], e["detail"]["version"], e["detail"].get("rollback_of"))
            for e in events] == [("deployed", 1, None), ("deployed", 2, None),
                                 ("deployed", 3, None), ("rolled back", 4, 2),
                                 ("rolled back", 5, 1)]
    versions = firebox_versions(server)
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5]
    assert versions[4]["rollback_of"] == 1

    # `app history --json` in Modal's shape: newest first, and a tag only because some have one.
    shown = json.loads(server.cli("app", "history", "test-rollback", "--json").stdout)
    assert [r["version"] for r in shown] == ["v5", "v4", "v3", "v2", "v1"]
    assert set(shown[0]) == {"version", "time_deployed", "client", "deployed_by", "commit", "tag"}
    assert shown[0]["client"] == metadata.version("firebox") and shown[0]["deployed_by"] == "main"
    assert [r["tag"] for r in shown] == ["rollback to v1", "rollback to v2", None, None, None]
    assert shown[4]["commit"] is None  # tmp_path is no git repository


def firebox_versions(server) -> list[dict]:
    resp = httpx.get(f"{server.url}/v1/apps/test-rollback/versions",
                     headers={"Authorization": f"Bearer {server.token}"})
    assert resp.status_code == 200, resp.text
    return resp.json()["versions"]


TWO = """if True:
    import firebox
    app = firebox.App("test-rollback-set")

    @app.function()
    def kept():
        return "kept"
    EXTRA
"""


def test_a_deploy_is_the_whole_app_and_a_rollback_brings_back_its_functions(server, tmp_path):
    path = tmp_path / "set.py"
    extra = '@app.function()\n    def extra():\n        return "extra"'
    path.write_text(TWO.replace("EXTRA", extra))
    assert server.cli("deploy", str(path)).returncode == 0
    old_handle = firebox.Function.from_name("test-rollback-set", "extra")
    assert old_handle.remote() == "extra"

    path.write_text(TWO.replace("EXTRA", ""))  # v2 leaves extra out
    assert server.cli("deploy", str(path)).returncode == 0
    with pytest.raises(NotFoundError, match=r"has no function or class 'extra' \(it has: kept\)"):
        firebox.Function.from_name("test-rollback-set", "extra").remote()
    with pytest.raises(NotFoundError, match="look it up again by name"):
        old_handle.remote()  # a handle from before: refused, not run on the old code
    listed = json.loads(server.cli("app", "list", "--json").stdout)
    assert next(a for a in listed if a["name"] == "test-rollback-set")["functions"] == 1

    assert server.cli("app", "rollback", "test-rollback-set").returncode == 0  # back to v1
    assert firebox.Function.from_name("test-rollback-set", "extra").remote() == "extra"
    assert firebox.Function.from_name("test-rollback-set", "kept").remote() == "kept"


def test_rollback_errors_say_what_to_do(server, tmp_path: Path):
    path = tmp_path / "once.py"
    path.write_text(SOURCE.replace("VERSION", "'only'").replace("TIMEOUT", "30")
                    .replace("test-rollback", "test-rollback-once"))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "once.py"], ["commit", "-qm", "once"]):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    path.write_text(path.read_text() + "\n")  # deployed with a change not committed
    assert server.cli("deploy", str(path)).returncode == 0
    table = server.cli("app", "history", "test-rollback-once")
    assert table.returncode == 0, table.stderr
    header, row = [line for line in table.stdout.splitlines() if line.strip(" ─")][:2]
    assert header.split()[:3] == ["VERSION", "TIME", "DEPLOYED"] and "TAG" not in header
    assert row.split()[0] == "v1" and f"{head[:7]}*" in row.split()
    shown = json.loads(server.cli("app", "history", "test-rollback-once", "--json").stdout)
    assert shown[0]["commit"] == head.strip() + "*" and "tag" not in shown[0]

    only = server.cli("app", "rollback", "test-rollback-once")
    assert only.returncode == 1
    assert "has only one version (v1)" in only.stderr and "Traceback" not in only.stderr

    missing = server.cli("app", "rollback", "test-rollback-once", "v7")
    assert missing.returncode == 1
    assert "has no version v7 (it has: v1)" in missing.stderr

    current = server.cli("app", "rollback", "test-rollback-once", "1")
    assert current.returncode == 1 and "v1 is the current version" in current.stderr

    bad = server.cli("app", "rollback", "test-rollback-once", "latest")
    assert bad.returncode == 2 and "write it as v3 or 3" in bad.stderr

    nope = server.cli("app", "rollback", "no-such-app-here")
    assert nope.returncode == 1 and "No app 'no-such-app-here'" in nope.stderr
