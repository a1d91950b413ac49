"""The control plane on PostgreSQL: a private cluster started for this module, a database per
test, and the same calls, deploys and crash recovery as on SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import test_cli as cli_tests
import test_durability as durability_tests
import test_environments as environments_tests
from apps import basic, faults
from conftest import ServerProcess, free_port
from helpers import eventually, use_server

PG_BIN = Path("/usr/lib/postgresql/15/bin")

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server binaries are not installed"
)


class PostgresCluster:
    """A throwaway cluster owned by the `postgres` user (postgres refuses to run as root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="firebox-pg-"))
        shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.databases = 0

    def pg(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, str(PG_BIN / tool), *args], check=True, capture_output=True,
                       timeout=60, cwd=self.root)

    def start(self) -> None:
        self.pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self.pg("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "log"),
                "-o", options)

    def create_database(self) -> str:
        self.databases += 1
        name = f"firebox{self.databases}"
        self.pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self.pg("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_server(postgres: PostgresCluster, tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path, database_url=postgres.create_database())
    srv.start()
    yield srv
    srv.stop()


def test_remote_map_and_class_on_postgres(pg_server, monkeypatch):
    use_server(monkeypatch, pg_server)
    with basic.app.run(show_logs=False):
        assert basic.square.remote(7) == 49
        assert list(basic.square.map(range(50))) == [x * x for x in range(50)]
        assert basic.Counter(start=5).add.remote(1) == 106
        with pytest.raises(basic.CustomError, match="boom"):
            basic.fail.remote("boom")
        assert list(basic.countdown.remote_gen(3)) == [3, 2, 1]
    # The remote calls' rows, written with their outputs: square, add, fail.
    assert eventually(lambda: durability_tests.remote_calls_stored(pg_server) == (3, 0))


def test_deploy_and_app_commands_on_postgres(pg_server):
    cli_tests.test_deploy_then_call_by_name_from_another_process(pg_server)
    cli_tests.test_app_list_logs_history_and_stop(pg_server)


def test_environments_migration_keeps_rows_on_postgres(postgres):
    environments_tests.upgrade_keeps_rows_in_main(postgres.create_database())


def test_map_survives_server_sigkill_on_postgres(pg_server, monkeypatch):
    durability_tests.map_through_sigkill(pg_server, monkeypatch)


def test_odd_output_and_long_names_on_postgres(pg_server, monkeypatch):
    use_server(monkeypatch, pg_server)
    with faults.app.run(show_logs=False):
        assert faults.print_odd.remote() == "done"
        app_id = faults.app.app_id
    logs = pg_server.cli("app", "logs", app_id)
    assert "[print_odd] nul\ufffdbyte" in logs.stdout
    assert "[print_odd] plain line" in logs.stdout
    response = httpx.post(pg_server.url + "/v1/apps", json={"name": "x" * 200},
                          headers={"Authorization": f"Bearer {pg_server.token}"})
    assert response.status_code == 422
    assert "at most 128 characters" in response.json()["error"]
