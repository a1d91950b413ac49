"""enable_memory_snapshot=True: a template imports the code and runs @enter(snap=True) once;
every container of the function is forked from it, runs its own @enter(snap=False) hooks and
keeps the template's state."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from apps import snapshots
from conftest import ServerProcess, current

import firebox

SOURCE = """if True:
    import os
    import firebox
    app = firebox.App("test-snapshot-versions")

    @app.cls(enable_memory_snapshot=True, scaledown_window=2)
    class Model:
        @firebox.enter(snap=True)
        def load(self):
            counts = firebox.Dict.from_name("snapshot-versions", create_if_missing=True)
            counts[f"snap/{os.getpid()}/{os.environ['FIREBOX_CONTAINER_ID']}"] = VERSION
            self.version = VERSION

        @firebox.method()
        def which(self):
            return self.version
"""


def runs(dict_name: str, kind: str) -> list[str]:
    counts = firebox.Dict.from_name(dict_name, create_if_missing=True)
    return [k for k in counts.keys() if k.startswith(kind + "/")]


@pytest.fixture(scope="module")
def running(server):
    os.environ["SNAP_DICT"] = "snapshot-counts"
    firebox.Dict.from_name("snapshot-counts", create_if_missing=True).clear()
    with snapshots.app.run():
        yield server


def test_snap_hooks_run_once_for_many_containers(running):
    results = list(snapshots.Model().info.map([3.0] * 3))  # long enough for 3 to start
    containers = {r["container"] for r in results}
    assert len(containers) == 3  # three containers at once
    assert all(r["env"] == r["container"] for r in results)  # each its own identity
    assert len(runs("snapshot-counts", "snap")) == 1  # the template's, once
    assert len(runs("snapshot-counts", "restore")) == 3  # @enter(snap=False) in each
    assert len({r["weights"] for r in results}) == 1  # state made in snap=True is there
    assert len({r["loaded_in"] for r in results}) == 1
    assert all(r["pid"] != r["loaded_in"] for r in results)  # in processes of their own
    assert len({r["random"] for r in results}) == 3  # each with its own random numbers

    # Scaled to zero and back, a container still starts from the template.
    time.sleep(4)
    snapshots.Model().info.remote()
    assert len(runs("snapshot-counts", "snap")) == 1
    assert len(runs("snapshot-counts", "restore")) == 4


def test_a_functions_module_is_imported_once(running):
    results = list(snapshots.where.map([1.0] * 3))
    assert len({r["container"] for r in results}) == 3
    assert len({r["imported_at"] for r in results}) == 1
    assert len({r["pid"] for r in results}) == 3
    assert all(r["pid"] != r["imported_in"] for r in results)


def test_logs_say_how_each_container_started(running):
    snapshots.where.remote()
    logs = running.cli("app", "logs", snapshots.app.app_id)
    assert logs.returncode == 0, logs.stderr
    text = logs.stdout + logs.stderr
    assert "made the memory snapshot in" in text
    assert "started from the memory snapshot in" in text
    stats = running.cli("app", "stats", snapshots.app.app_id, "--json")
    starts = {(r["function"], r["start"]) for r in json.loads(stats.stdout)["starts"]}
    assert ("where", "template") in starts  # every container, the first one too
    assert ("where", "cold") not in starts


def test_a_failing_snap_hook_fails_the_call_clearly(running):
    for _ in range(2):  # and again: a new template, not a hang
        with pytest.raises(RuntimeError, match="the weights are missing"):
            snapshots.Broken().go.remote()


def test_a_killed_template_is_made_again(running):
    snapshots.where.remote()
    killed = _template_pids(running.proc.pid)
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    assert snapshots.where.remote()["container"]  # a new template, a new container
    assert set(_template_pids(running.proc.pid)) - set(killed)


def test_new_code_makes_a_new_snapshot(server, tmp_path: Path):
    path = tmp_path / "versions.py"
    firebox.Dict.from_name("snapshot-versions", create_if_missing=True).clear()
    for version in ("one", "two"):
        path.write_text(SOURCE.replace("VERSION", repr(version)))
        result = server.cli("deploy", str(path))
        assert result.returncode == 0, result.stderr
        Model = firebox.Cls.from_name("test-snapshot-versions", "Model")
        assert Model().which.remote() == version
    made = firebox.Dict.from_name("snapshot-versions")
    assert sorted(made.values()) == ["one", "two"]  # one template per version of the code


def _template_pids(server_pid: int) -> list[int]:
    """The server's templates: its children launched with FIREBOX_TEMPLATE_FD set."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == server_pid and b"FIREBOX_TEMPLATE_FD=" in environ:
            pids.append(int(proc.name))
    return pids



def test_templates_under_process_isolation(tmp_path: Path):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_ISOLATION": "process"})
    srv.start()
    try:
        with current(srv):
            firebox.Dict.from_name("snapshot-counts", create_if_missing=True).clear()
            with snapshots.app.run():
                results = list(snapshots.Model().info.map([1.0] * 2))
            assert len({r["container"] for r in results}) == 2
            assert len({r["loaded_in"] for r in results}) == 1
            assert len(runs("snapshot-counts", "snap")) == 1
            assert len(runs("snapshot-counts", "restore")) == 2
    finally:
        srv.stop()
