"""Secrets: constructors, encryption at rest, injection into containers, CLI, workspaces."""

import os
import stat

import pytest
import sqlalchemy as sa
from apps import objects
from other_workspace import other_workspace_env, run_cli, run_python

import firebox as modal
from firebox.sdk.secret import parse_dotenv


def test_constructors(tmp_path, monkeypatch):
    assert modal.Secret.from_dict({"A": "1", "B": None})._env == {"A": "1"}
    monkeypatch.setenv("FB_LOCAL_X", "x")
    assert modal.Secret.from_local_environ(["FB_LOCAL_X"])._env == {"FB_LOCAL_X": "x"}
    with pytest.raises(modal.exception.InvalidError, match="FB_NOT_SET"):
        modal.Secret.from_local_environ(["FB_NOT_SET"])
    (tmp_path / ".env").write_text('# c\nexport A=1\nB="two words"\nC=\'q\' \nD=x # note\n')
    assert modal.Secret.from_dotenv(tmp_path)._env == {
        "A": "1", "B": "two words", "C": "q", "D": "x"}
    monkeypatch.chdir(tmp_path)
    assert modal.Secret.from_dotenv()._env["A"] == "1"
    with pytest.raises(modal.exception.InvalidError):
        parse_dotenv("no equals sign")


def test_cli_never_prints_values_and_stores_them_encrypted(server):
    created = server.cli("secret", "create", "t-cli-secret", "TOKEN=s3cr3t-value", "USER=bob")
    assert created.returncode == 0, created.stderr
    assert "s3cr3t-value" not in created.stdout and "TOKEN" in created.stdout
    again = server.cli("secret", "create", "t-cli-secret", "TOKEN=x")
    assert again.returncode != 0 and "exists" in again.stderr
    listed = server.cli("secret", "list")
    assert "t-cli-secret" in listed.stdout and "s3cr3t-value" not in listed.stdout
    assert "s3cr3t-value" not in server.cli("secret", "list", "--json").stdout
    key_file = server.state_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    engine = sa.create_engine(f"sqlite:///{server.state_dir / 'firebox.db'}")
    with engine.connect() as conn:
        blobs = [r[0] for r in conn.execute(sa.text("select data from secrets"))]
    engine.dispose()
    assert blobs and not any(b"s3cr3t-value" in bytes(b) for b in blobs)
    assert server.cli("secret", "delete", "t-cli-secret").returncode == 0
    assert "t-cli-secret" not in server.cli("secret", "list").stdout


def test_injected_into_containers_later_ones_win(server):
    server.cli("secret", "create", "t-named", "NAMED=from-name", "LAYER=named", "--force")
    with objects.app.run(show_logs=False):
        env = objects.read_env.remote()
        assert env == {"LAYER": "function", "APP_ONLY": "1", "EXTRA": "e", "NAMED": None}
        variant = objects.read_env.with_options(
            secrets=[modal.Secret.from_dict({"LAYER": "first"}),
                     modal.Secret.from_name("t-named", required_keys=["NAMED"])]
        )
        assert variant.remote() == {"LAYER": "named", "APP_ONLY": None, "EXTRA": None,
                                    "NAMED": "from-name"}
    assert "FIREBOX_TOKEN" in os.environ  # the caller's own environment is untouched


def test_from_name_checks_required_keys(server):
    server.cli("secret", "create", "t-req", "A=1", "--force")
    variant = objects.read_env.with_options(
        secrets=[modal.Secret.from_name("t-req", required_keys=["A", "MISSING_KEY"])]
    )
    with objects.app.run(show_logs=False):
        with pytest.raises(modal.exception.NotFoundError, match="MISSING_KEY"):
            variant.remote()
    with pytest.raises(modal.exception.NotFoundError, match="t-no-such-secret"):
        with objects.app.run(show_logs=False):
            objects.read_env.with_options(
                secrets=[modal.Secret.from_name("t-no-such-secret")]).remote()


def test_other_workspace_cannot_see_it(server):
    server.cli("secret", "create", "t-private-secret", "K=v", "--force")
    env = other_workspace_env(server)
    assert "t-private-secret" not in run_cli(env, "secret", "list").stdout
    assert run_cli(env, "secret", "delete", "t-private-secret").returncode != 0
    out = run_python(env, (
        "import firebox as m, asyncio\n"
        "try:\n    m._sync.run(m.Secret.from_name('t-private-secret')._resolve())\n"
        "except m.exception.NotFoundError:\n    print('denied')\n"
    ))
    assert out.stdout.strip() == "denied", out.stderr
