"""Commands a Modal user expects, run as a user would against a real server: containers,
tokens from a client machine, secrets from files, and help text on every command."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import click
from click.testing import CliRunner
from helpers import eventually
from other_workspace import other_workspace_env, run_cli

from firebox.cli.main import main

WARM_APP = """if True:
    import firebox
    app = firebox.App("test-container-commands")

    @app.cls(min_containers=1)
    class Warm:
        @firebox.enter()
        def start(self):
            print("warm container says hello", flush=True)

        @firebox.method()
        def ping(self):
            print("ping received", flush=True)
            return "pong"
"""


def _containers(server, app: str) -> list[dict]:
    result = server.cli("container", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [c for c in json.loads(result.stdout) if c["app"] == app]


def test_container_list_logs_and_stop(server, tmp_path: Path):
    path = tmp_path / "warm.py"
    path.write_text(WARM_APP)
    deployed = server.cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    follower = None
    try:
        found = eventually(lambda: [c for c in _containers(server, "test-container-commands")
                                    if c["state"] == "ready"], timeout=30)
        assert found, server.cli("container", "list").stdout
        container = found[0]
        assert container["function"] == "Warm" and container["started_at"]
        table = server.cli("container", "list")
        assert container["container_id"] in table.stdout
        assert "test-container-commands" in table.stdout

        logs = eventually(lambda: server.cli("container", "logs", container["container_id"])
                          .stdout, timeout=10)
        assert "warm container says hello" in logs

        # Another workspace neither sees the container nor can stop it.
        other = other_workspace_env(server)
        theirs = run_cli(other, "container", "list", "--json")
        assert container["container_id"] not in theirs.stdout
        refused = run_cli(other, "container", "stop", container["container_id"])
        assert refused.returncode == 1 and "No running container" in refused.stderr

        follower = subprocess.Popen(
            [sys.executable, "-m", "firebox.cli.main", "container", "logs", "-f",
             container["container_id"]], env=_client_env(server, tmp_path, server.token),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        followed: list[str] = []
        reader = threading.Thread(target=lambda: followed.extend(follower.stdout), daemon=True)
        reader.start()
        ping = ('import firebox; print(firebox.Cls.from_name("test-container-commands", "Warm")()'
                '.ping.remote())')
        pinged = subprocess.run([sys.executable, "-c", ping], capture_output=True, text=True,
                                env=_client_env(server, tmp_path, server.token), timeout=60)
        assert pinged.stdout.strip() == "pong", pinged.stderr
        assert eventually(lambda: any("ping received" in line for line in followed), timeout=10)

        stopped = server.cli("container", "stop", container["container_id"])
        assert stopped.returncode == 0, stopped.stderr
        assert f"Stopping {container['container_id']}" in stopped.stdout
        gone = eventually(lambda: container["container_id"] not in
                          {c["container_id"] for c in _containers(server,
                                                                  "test-container-commands")},
                          timeout=20)
        assert gone
        follower.wait(timeout=15)  # the container exited: following it ends by itself
        reader.join(5)
        assert follower.returncode == 0, followed
        again = server.cli("container", "stop", container["container_id"])
        assert again.returncode == 1 and "`firebox container list`" in again.stderr
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
        server.cli("app", "stop", "test-container-commands")


def _client_env(server, config_dir: Path, token: str | None = None) -> dict[str, str]:
    """A client machine's environment: its own config directory, and a token only if given."""
    env = server.env() | {"FIREBOX_CONFIG_DIR": str(config_dir)}
    if token is not None:
        env |= {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": token}
    return env


def test_token_new_set_and_info_from_a_client_machine(server, tmp_path: Path):
    made = server.cli("token", "new")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token and "firebox token set --server" in made.stderr

    laptop = tmp_path / "laptop"
    refused = run_cli(_client_env(server, laptop), "token", "set", "--server", server.url,
                      "--token", "not-a-token")
    assert refused.returncode == 1 and "refused this token" in refused.stderr
    assert not (laptop / "config.toml").exists()

    saved = run_cli(_client_env(server, laptop), "token", "set", "--server", server.url + "/",
                    "--token", token)
    assert saved.returncode == 0, saved.stderr
    assert "a user token of workspace 'main'" in saved.stdout
    config_file = laptop / "config.toml"
    assert tomllib.loads(config_file.read_text()) == {
        "main": {"server_url": server.url, "token": token, "active": True}}
    assert config_file.stat().st_mode & 0o777 == 0o600
    shadowed = run_cli(_client_env(server, laptop, server.token), "token", "set", "--server",
                       server.url, "--token", token)
    assert shadowed.returncode == 0, shadowed.stderr
    assert "FIREBOX_SERVER_URL and FIREBOX_TOKEN set in this shell override" in shadowed.stderr

    info = run_cli(_client_env(server, laptop), "token", "info")
    assert info.returncode == 0, info.stderr
    assert server.url in info.stdout and "workspace: main" in info.stdout
    assert f"a user token, from {config_file}" in info.stdout
    as_json = json.loads(run_cli(_client_env(server, laptop), "token", "info", "--json").stdout)
    assert as_json["kind"] == "user" and as_json["workspace"] == "main"

    # A user token makes user tokens only, and only for its own workspace.
    again = run_cli(_client_env(server, laptop), "token", "new")
    assert again.returncode == 0, again.stderr
    second = json.loads(run_cli(_client_env(server, laptop, again.stdout.strip()),
                                "token", "info", "--json").stdout)
    assert second["kind"] == "user" and second["workspace_id"] == as_json["workspace_id"]
    other = json.loads(run_cli(other_workspace_env(server), "token", "info", "--json").stdout)
    assert other["workspace"] == "other"


SECRET_READER = """if True:
    import json, os
    import firebox
    app = firebox.App("test-secret-files")

    @app.function(secrets=[firebox.Secret.from_name("test-from-files")])
    def read(keys):
        return {k: os.environ.get(k) for k in keys}

    if __name__ == "__main__":
        with app.run(show_logs=False):
            print(json.dumps(read.remote(["DB_URL", "QUOTED", "API_KEY", "PORT", "EXTRA"])))
"""


def test_secret_create_from_dotenv_and_json_files(server, tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('# the database\nexport DB_URL=postgres://db/1\nQUOTED="two words"\n'
                      "PORT=1 # overridden below\n")
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"API_KEY": "k-123", "PORT": "2"}))
    created = server.cli("secret", "create", "test-from-files", "--from-dotenv", str(dotenv),
                         "--from-json", str(as_json), "EXTRA=x", "--force")
    assert created.returncode == 0, created.stderr
    assert "k-123" not in created.stdout and "API_KEY" in created.stdout
    listed = json.loads(server.cli("secret", "list", "--json").stdout)
    keys = next(s["keys"] for s in listed if s["name"] == "test-from-files")
    assert sorted(keys) == ["API_KEY", "DB_URL", "EXTRA", "PORT", "QUOTED"]

    reader = tmp_path / "reader.py"
    reader.write_text(SECRET_READER)
    ran = run_python_file(server, reader)
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {
        "DB_URL": "postgres://db/1", "QUOTED": "two words", "API_KEY": "k-123", "PORT": "2",
        "EXTRA": "x"}

    (tmp_path / "list.json").write_text('["not", "an object"]')
    (tmp_path / "number.json").write_text('{"PORT": 8080}')
    for args, says in [
        (["--from-json", str(tmp_path / "list.json")], "must hold a JSON object"),
        (["--from-json", str(tmp_path / "number.json")], "the values of PORT are not strings"),
        (["--from-dotenv", str(tmp_path / "missing.env")], "does not exist"),
        ([], "Give KEY=VALUE pairs, --from-dotenv FILE or --from-json FILE"),
    ]:
        refused = server.cli("secret", "create", "test-refused-file", *args)
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr


def run_python_file(server, path: Path):
    env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    result = subprocess.run([sys.executable, str(path)], env=env, cwd=path.parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def test_every_command_group_and_option_has_help():
    bare = [" ".join(("firebox", *path)) for path, cmd in _commands(main)
            if not (cmd.help or cmd.short_help or "").strip()]
    options = [f"firebox {' '.join(path)} {param.opts[-1]}" for path, cmd in _commands(main)
               for param in cmd.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert (bare, options) == ([], [])


def test_each_commands_help_says_what_it_does():
    runner = CliRunner()
    for path, cmd in _commands(main):
        with click.Context(cmd) as ctx:
            if cmd.get_help_option(ctx) is None:  # `run` hands --help to the app's entrypoint
                continue
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        summary = result.output.split("\n\n")[1].strip()
        assert summary and not summary.startswith("Options:"), (path, result.output)
