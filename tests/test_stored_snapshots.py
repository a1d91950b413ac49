"""Stored memory snapshots: a gVisor function with enable_memory_snapshot=True is checkpointed to
disk once (runsc checkpoint) and every container, across scale-to-zero and server restarts, is
restored from there (runsc restore); a corrupt snapshot falls back cold and is made again."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import ServerProcess, current

import firebox

pytestmark = pytest.mark.skipif(shutil.which("runsc") is None, reason="needs gVisor's runsc")

SOURCE = """if True:
    import os, random
    import firebox
    app = firebox.App("test-stored-snapshots")

    def mark(kind):
        counts = firebox.Dict.from_name("stored-counts", create_if_missing=True)
        counts[f"{kind}/{os.environ['FIREBOX_CONTAINER_ID']}"] = True

    @app.cls(enable_memory_snapshot=True, isolation="gvisor", block_network=True,
             scaledown_window=2)
    class Model:
        @firebox.enter(snap=True)
        def load(self):
            mark("snap")
            self.weights = [random.random() for _ in range(100_000)]

        @firebox.enter(snap=False)
        def warm(self):
            mark("restore")
            self.container = os.environ["FIREBOX_CONTAINER_ID"]

        @firebox.method()
        def info(self):
            return {"container": self.container, "env": os.environ["FIREBOX_CONTAINER_ID"],
                    "weights": round(sum(self.weights), 6), "random": random.random(),
                    "code": sorted(os.listdir("."))}
"""


def _runs(kind: str) -> int:
    counts = firebox.Dict.from_name("stored-counts", create_if_missing=True)
    return len([k for k in counts.keys() if k.startswith(kind + "/")])


def _call_after_scale_down() -> dict:
    time.sleep(4)  # scaledown_window=2: the last container is gone
    return firebox.Cls.from_name("test-stored-snapshots", "Model")().info.remote()


def _images(srv: ServerProcess) -> list[Path]:
    return sorted((srv.state_dir / "snapshots").glob("*/*/checkpoint.img"))


def test_stored_snapshot_restores_containers_across_restarts(tmp_path: Path):
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        with current(srv):
            firebox.Dict.from_name("stored-counts", create_if_missing=True).clear()
            path = tmp_path / "stored.py"
            path.write_text(SOURCE)
            deployed = srv.cli("deploy", str(path))
            assert deployed.returncode == 0, deployed.stderr

            first = firebox.Cls.from_name("test-stored-snapshots", "Model")().info.remote()
            second = _call_after_scale_down()
            assert first["container"] != second["container"]
            assert first["env"] == first["container"] and second["env"] == second["container"]
            assert first["weights"] == second["weights"]  # made once, in @enter(snap=True)
            assert first["random"] != second["random"]  # each restore reseeds `random`
            assert first["code"] == ["stored.py"]  # the code's files are there
            assert (_runs("snap"), _runs("restore")) == (1, 2)
            assert len(_images(srv)) == 1
            logs = srv.cli("app", "logs", "test-stored-snapshots")
            text = logs.stdout + logs.stderr
            assert "stored the memory snapshot" in text
            assert "restored from the stored memory snapshot in" in text
            stats = srv.cli("app", "stats", "test-stored-snapshots", "--json")
            starts = json.loads(stats.stdout)["starts"]  # after scale-to-zero too
            assert [(r["start"], r["count"]) for r in starts] == [("stored", 2)]
            assert 0 < starts[0]["median_s"] < 30
            table = srv.cli("app", "stats", "test-stored-snapshots").stdout
            assert "Recent starts" in table and "stored" in table

            assert "its sandbox was restored ahead" in text  # the second took the spare

        # The server restarts: the stored snapshot is still the function's.
        srv.stop()
        srv.start()
        with current(srv):
            third = _call_after_scale_down()
            assert third["weights"] == first["weights"]
            assert (_runs("snap"), _runs("restore")) == (1, 3)

        # A corrupt snapshot (the server stopped, so no sandbox was restored from it ahead):
        # the restore fails, says so, and the container starts cold with a new one made.
        srv.stop()
        _images(srv)[0].write_bytes(b"not a checkpoint")
        srv.start()
        with current(srv):
            fourth = _call_after_scale_down()
            assert fourth["weights"] != first["weights"]  # a new snapshot's
            assert _runs("snap") == 2
            logs = srv.cli("app", "logs", "test-stored-snapshots")
            assert "could not be restored" in logs.stdout + logs.stderr
            assert len(_images(srv)) == 1 and _images(srv)[0].stat().st_size > 100
            fifth = _call_after_scale_down()
            assert fifth["weights"] == fourth["weights"]
    finally:
        srv.stop()


def test_a_gvisor_function_with_a_network_starts_cold_and_says_why(server, tmp_path: Path):
    path = tmp_path / "networked.py"
    path.write_text(SOURCE.replace("test-stored-snapshots", "test-stored-networked")
                    .replace("block_network=True,", ""))
    deployed = server.cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    result = firebox.Cls.from_name("test-stored-networked", "Model")().info.remote()
    assert result["env"] == result["container"]
    logs = server.cli("app", "logs", "test-stored-networked")
    assert "restores no network interfaces" in logs.stdout + logs.stderr
