"""Environments, as a user meets them: the same app and the same Dict name in two environments of
one workspace, chosen with `-e`, FIREBOX_ENVIRONMENT or environment_name=, and the environment
commands themselves."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from conftest import REPO
from other_workspace import run_cli
from sqlalchemy.ext.asyncio import create_async_engine

from firebox.store.db import MIGRATIONS, async_url

APP = """if True:
    import os
    import firebox

    app = firebox.App("env-app")

    # Deployed with -e, the secret named here is the one of that environment.
    @app.function(secrets=[firebox.Secret.from_name("env-secret")])
    def where():
        # No environment named: a container finds its own app's objects.
        return (os.environ["MODAL_ENVIRONMENT"], firebox.Dict.from_name("env-dict").get("k"),
                os.environ["WHICH"])

    @app.function()
    @firebox.fastapi_endpoint()
    def hello():
        return {"environment": os.environ["MODAL_ENVIRONMENT"]}
"""

CALLS = """if True:
    import json
    import firebox
    print(json.dumps({
        env: firebox.Function.from_name("env-app", "where", environment_name=env).remote()
        for env in ("main", "dev")
    } | {"dev app": firebox.App.lookup("env-app", environment_name="dev").app_id}))
"""


def _python(server, code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env=server.env() | {
                                "FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token,
                                **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_environments_hold_their_own_app_and_dict(server, tmp_path: Path):
    app_file = tmp_path / "env_app.py"
    app_file.write_text(APP)
    assert "Created environment 'dev'" in _ok(server.cli("environment", "create", "dev"))
    try:
        _python(server, "import firebox; firebox.Dict.from_name('env-dict', "
                        "create_if_missing=True)['k'] = 'main value'")
        # FIREBOX_ENVIRONMENT chooses it for a process, as -e does for a command.
        _python(server, "import firebox; firebox.Dict.from_name('env-dict', "
                        "create_if_missing=True)['k'] = 'dev value'", FIREBOX_ENVIRONMENT="dev")
        _ok(server.cli("secret", "create", "env-secret", "WHICH=main secret"))
        _ok(server.cli("secret", "create", "env-secret", "WHICH=dev secret", "-e", "dev"))

        main_out = _ok(server.cli("deploy", str(app_file)))
        dev_out = _ok(server.cli("deploy", "-e", "dev", str(app_file)))
        assert "in environment 'dev' with:" in dev_out and "in environment" not in main_out
        main_url, dev_url = (next(line.split("=> ")[1] for line in out.splitlines()
                                  if "hello =>" in line) for out in (main_out, dev_out))
        assert main_url != dev_url and "dev--" in dev_url

        # Each deployment runs in its own environment and finds its own Dict there.
        called = json.loads(_python(server, CALLS))
        assert called.pop("main") == ["main", "main value", "main secret"]
        assert called.pop("dev") == ["dev", "dev value", "dev secret"]
        assert httpx.get(dev_url, timeout=120).json() == {"environment": "dev"}

        main_apps = json.loads(_ok(server.cli("app", "list", "--json")))
        dev_apps = json.loads(_ok(server.cli("app", "list", "-e", "dev", "--json")))
        assert [a["name"] for a in dev_apps] == ["env-app"]
        assert dev_apps[0]["app_id"] == called["dev app"]
        assert dev_apps[0]["app_id"] not in {a["app_id"] for a in main_apps}
        # A profile's `environment` chooses it for the commands that use the profile.
        (tmp_path / "config.toml").write_text(
            f'[work]\nserver_url = "{server.url}"\ntoken = "{server.token}"\n'
            'environment = "dev"\nactive = true\n')
        profile = server.env() | {"FIREBOX_CONFIG_DIR": str(tmp_path)}
        assert [a["app_id"] for a in json.loads(_ok(run_cli(profile, "app", "list", "--json")))
                ] == [dev_apps[0]["app_id"]]
        assert "workspace: main (" in (info := _ok(run_cli(profile, "token", "info")))
        assert "), environment dev" in info

        containers = json.loads(_ok(server.cli("container", "list", "-e", "dev", "--json")))
        assert {c["app_id"] for c in containers} == {dev_apps[0]["app_id"]}

        _rename_then_delete(server, dev_apps[0]["app_id"])
        # main's Dict is untouched.
        assert "'main value'" in _ok(server.cli("dict", "get", "env-dict", "k"))
    finally:
        left = json.loads(_ok(server.cli("environment", "list", "--json")))
        for env in {e["name"] for e in left} - {"main"}:
            server.cli("environment", "delete", env, "--yes")
        server.cli("app", "stop", "env-app")
        server.cli("dict", "delete", "env-dict")
        server.cli("secret", "delete", "env-secret")


RENAMED = """if True:
    import json
    import firebox
    f = firebox.Function.from_name("env-app", "where", environment_name="staging")
    hello = firebox.Function.from_name("env-app", "hello", environment_name="staging")
    print(json.dumps([f.remote(), hello.get_web_url()]))
"""


def _rename_then_delete(server, app_id: str) -> None:
    """Renamed, dev's app runs on as staging's, at staging's URL; deleting it takes --yes."""
    renamed = _ok(server.cli("environment", "update", "dev", "--set-name", "staging"))
    assert "Renamed environment 'dev' to 'staging'" in renamed
    assert [a["app_id"] for a in json.loads(_ok(server.cli("app", "list", "-e", "staging",
                                                           "--json")))] == [app_id]
    result, url = json.loads(_python(server, RENAMED))
    assert result == ["staging", "dev value", "dev secret"] and "staging--" in url
    assert httpx.get(url, timeout=120).json() == {"environment": "staging"}

    listed = _ok(server.cli("environment", "list"))
    assert "main" in listed and "staging" in listed
    refused = server.cli("environment", "delete", "staging")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "Error: The environment 'staging' holds 1 app(s) and 2 object(s); stop and delete them "
        "first, or pass --yes to delete it with them.")
    deleted = _ok(server.cli("environment", "delete", "staging", "--yes"))
    assert "Deleted environment 'staging', stopping 1 app(s) and deleting 2 object(s)." in deleted
    assert [e["name"] for e in json.loads(_ok(server.cli("environment", "list", "--json")))
            ] == ["main"]


def test_an_unknown_environment_says_how_to_make_it(server):
    line = "Error: No environment 'nope' in this workspace; create it with `firebox environment " \
           "create nope`."
    unknown = server.cli("app", "list", "-e", "nope")
    assert unknown.returncode == 1 and unknown.stderr.strip() == line
    main = server.cli("environment", "delete", "main")
    assert main.returncode == 1 and "'main' is the workspace's default" in main.stderr
    odd = server.cli("app", "list", "-e", "dév")
    assert odd.returncode == 1 and odd.stderr.startswith(
        "Error: 'dév' is not an environment name")
    # What concerns the whole workspace takes no -e, rather than ignoring it.
    workspace = server.cli("workspace", "show", "-e", "dev")
    assert workspace.returncode == 2 and "No such option '-e'" in workspace.stderr


SANDBOXES = """if True:
    import json
    import firebox
    app = firebox.App.lookup("env-sandboxes", create_if_missing=True, environment_name="sbx")
    sb = firebox.Sandbox.create("sleep", "60", app=app)
    try:
        print(json.dumps([sb.object_id,
                          [s.object_id for s in firebox.Sandbox.list(environment_name="sbx")],
                          [s.object_id for s in firebox.Sandbox.list()]]))
    finally:
        sb.terminate()
"""


def test_sandboxes_are_listed_in_their_apps_environment(server):
    _ok(server.cli("environment", "create", "sbx"))
    try:
        sandbox, in_sbx, in_main = json.loads(_python(server, SANDBOXES))
        assert in_sbx == [sandbox] and sandbox not in in_main
    finally:
        server.cli("environment", "delete", "sbx", "--yes")


ENTRYPOINT = """if True:
    import os
    import firebox

    app = firebox.App("env-run")

    @app.function()
    def where():
        return os.environ["MODAL_ENVIRONMENT"]

    @app.local_entrypoint()
    def main(env: str = "none"):
        print("ran in", where.remote(), "with --env", env)
"""


def test_run_with_the_embedded_server_makes_the_environment_asked_for(tmp_path: Path):
    (tmp_path / "home").mkdir()
    (tmp_path / "env_run.py").write_text(ENTRYPOINT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    env |= {"HOME": str(tmp_path / "home"), "FIREBOX_CONFIG_DIR": str(tmp_path / "home")}
    # -e before the file is firebox's; an --env after it is the entrypoint's own.
    ran = run_cli(env, "run", "-e", "dev", str(tmp_path / "env_run.py"), "--env", "prod")
    assert ran.returncode == 0, ran.stderr
    assert "ran in dev with --env prod" in ran.stdout


def upgrade_keeps_rows_in_main(url: str) -> None:
    """Migration 0010 on a database at 0009 that holds an app and a Dict: both are main's after
    it, and the Dict's name is free in another environment, once."""
    def steps(conn: sa.Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
        conn.execute(sa.text("INSERT INTO apps (id, workspace_id, name, state, created_at) "
                             "VALUES ('ap-1', 'ws', 'a', 'deployed', 0)"))
        conn.execute(sa.text("INSERT INTO dicts (id, workspace_id, name, created_at) "
                             "VALUES ('di-1', 'ws', 'd', 0)"))
        command.upgrade(cfg, "head")
        for table in ("apps", "dicts"):
            assert conn.execute(sa.text(f"SELECT environment FROM {table}")).all() == [("main",)]
        insert = sa.text("INSERT INTO dicts (id, workspace_id, environment, name, created_at) "
                         "VALUES (:id, 'ws', 'dev', 'd', 0)")
        conn.execute(insert, {"id": "di-2"})
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(insert, {"id": "di-3"})

    async def upgrade() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(steps)
        finally:
            await engine.dispose()

    asyncio.run(upgrade())


def test_an_upgraded_database_keeps_its_apps_and_objects_in_main(tmp_path: Path):
    upgrade_keeps_rows_in_main(f"sqlite:///{tmp_path / 'db.sqlite'}")
