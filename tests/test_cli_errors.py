"""What a user sees when something is wrong: one or two lines that say what happened and what to
do, and of a failing app file only the user's own traceback, never click's or importlib's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, free_port


def firebox(*args: str, env: dict[str, str], cwd: Path = REPO,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firebox.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def user_env(config_dir: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no FIREBOX_* variables but the config directory and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    return env | {"FIREBOX_CONFIG_DIR": str(config_dir)} | extra


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, (result.stdout, result.stderr)
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def test_a_malformed_config_file_is_named(tmp_path: Path):
    (tmp_path / "config.toml").write_text('server_url = "http://127.0.0.1:8765\n')
    result = firebox("app", "list", env=user_env(tmp_path))
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert f"{tmp_path / 'config.toml'} is not valid TOML" in line
    assert "fix it" in line


def test_a_config_without_a_token_says_how_to_save_one(tmp_path: Path):
    (tmp_path / "config.toml").write_text('server_url = "http://127.0.0.1:8765"\n')
    result = firebox("app", "list", env=user_env(tmp_path))
    assert "Illegal header" not in result.stderr and "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert "No token for the server at http://127.0.0.1:8765" in line
    assert "`firebox token set --server http://127.0.0.1:8765 --token TOKEN`" in line


def test_nothing_listening_locally_fails_in_seconds_and_says_so_at_once(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "config.toml").write_text(f'server_url = "{url}"\ntoken = "fb-x"\n')
    started = time.monotonic()
    result = firebox("app", "list", env=user_env(tmp_path))
    assert time.monotonic() - started < 15  # not the reconnect timeout's 120 s
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"firebox: no answer from the server at {url} (connection refused)")
    [line] = error_lines(result)
    assert f"Nothing is listening at {url} (set in {tmp_path / 'config.toml'})" in line
    assert "`firebox server`" in line


def test_firebox_run_with_an_unreachable_server_says_how_to_use_the_embedded_one(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = firebox("run", "tests/apps/deployed.py::greet", "--name", "x",
                     env=user_env(tmp_path, FIREBOX_SERVER_URL=url, FIREBOX_TOKEN="fb-x"))
    [line] = error_lines(result)
    assert f"Nothing is listening at {url} (set in FIREBOX_SERVER_URL)" in line
    assert "To run with an embedded server instead, unset FIREBOX_SERVER_URL." in line


def test_a_server_reached_once_is_waited_for_through_a_restart(own_server):
    """A refused connection after a first answer is a restart: the client keeps trying (past
    the seconds it gives a server it never reached) and says so once, at once."""
    code = """if True:
        import sys, time
        import firebox.client as client, firebox._sync as sync
        c = client.current()
        sync.run(c.request("GET", "/v1/apps"))
        print("reached", flush=True)
        sys.stdin.readline()
        print(len(sync.run(c.request("GET", "/v1/apps"))["apps"]) >= 0, flush=True)
    """
    env = own_server.env() | {"FIREBOX_SERVER_URL": own_server.url,
                              "FIREBOX_TOKEN": own_server.token}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "reached\n"
    own_server.kill()
    proc.stdin.write("\n")
    proc.stdin.flush()
    time.sleep(5)  # longer than a never-reached server is given
    own_server.start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "True\n"
    assert err.count("firebox: no answer from the server at") == 1
    assert "retrying for up to 120s (FIREBOX_RECONNECT_TIMEOUT)" in err


def test_a_syntax_error_in_the_app_shows_only_the_users_lines(tmp_path: Path):
    app = tmp_path / "broken.py"
    app.write_text("import firebox\napp = firebox.App('x')\ndef f(:\n    pass\n")
    result = firebox("run", str(app), env=user_env(tmp_path), cwd=tmp_path)
    assert "click" not in result.stderr and "importlib" not in result.stderr
    assert result.stderr.splitlines() == [
        f'  File "{app}", line 3',
        "    def f(:",
        "          ^",
        "SyntaxError: invalid syntax",
        "Error: " + str(app) + " failed to load (SyntaxError, above); fix it and run again.",
    ]


def test_an_exception_in_the_app_shows_its_traceback_from_the_users_file(tmp_path: Path):
    app = tmp_path / "raises.py"
    app.write_text("import firebox\n\ndef g():\n    raise ValueError('boom')\n\ng()\n")
    result = firebox("deploy", "raises.py", env=user_env(tmp_path), cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{app}", line 6, in <module>',
        "    g()",
        f'  File "{app}", line 4, in g',
        "    raise ValueError('boom')",
        "ValueError: boom",
        "Error: raises.py failed to load (ValueError, above); fix it and run again.",
    ]


def test_an_sdk_error_while_loading_the_app_is_one_line_with_its_place(tmp_path: Path):
    app = tmp_path / "invalid.py"
    app.write_text("import firebox\napp = firebox.App('x')\n\n@app.function(timeout=0)\n"
                   "def f():\n    pass\n")
    result = firebox("run", "invalid.py", env=user_env(tmp_path), cwd=tmp_path)
    assert result.stderr.splitlines() == error_lines(result)
    [line] = error_lines(result)
    assert line.startswith("Error: invalid.py, line 4: timeout must be")


def test_a_volumes_file_errors_are_one_line_in_the_commands_words(server, tmp_path: Path):
    assert server.cli("volume", "create", "errors-vol").returncode == 0
    local = tmp_path / "a.txt"
    local.write_text("hi")
    assert server.cli("volume", "put", "errors-vol", str(local), "/dir/a.txt").returncode == 0

    def error(*args: str) -> str:
        result = server.cli("volume", *args)
        assert "Traceback" not in result.stderr
        [line] = error_lines(result)
        return line

    assert error("ls", "errors-vol", "/nope") == (
        "Error: No file or directory 'nope' in volume 'errors-vol'; "
        "`firebox volume ls errors-vol` shows what it holds.")
    assert error("get", "errors-vol", "/dir/missing", str(tmp_path / "out.txt")) == (
        "Error: No file 'dir/missing' in volume 'errors-vol'; "
        "`firebox volume ls errors-vol /dir` lists what is there.")
    assert not list(tmp_path.glob("*out.txt*"))  # no empty file left for the missing one
    assert error("rm", "errors-vol", "/dir") == (
        "Error: 'dir' is a directory; pass -r to remove it.")
    assert error("put", "errors-vol", str(local), "/dir/a.txt") == (
        "Error: 'dir/a.txt' exists in volume 'errors-vol'; pass --force to overwrite it.")
    assert error("get", "errors-vol", "/dir/a.txt", str(tmp_path / "nowhere" / "a.txt")) == (
        f"Error: Cannot write {tmp_path / 'nowhere' / 'a.txt'}: No such file or directory.")
    assert server.cli("volume", "rm", "-r", "errors-vol", "/dir").returncode == 0


def test_dict_get_of_a_missing_key_says_how_to_see_the_keys(server):
    assert server.cli("dict", "create", "errors-dict").returncode == 0
    result = server.cli("dict", "get", "errors-dict", "k")
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [
        "Error: No key 'k' in Dict 'errors-dict'; `firebox dict items errors-dict` shows its keys."]


def test_an_exception_from_the_users_function_shows_only_the_users_frames(tmp_path: Path):
    app = tmp_path / "divides.py"
    app.write_text("import firebox\napp = firebox.App('divides')\n\n@app.function()\n"
                   "def f(x: int):\n    return 1 / x\n\n@app.local_entrypoint()\ndef main():\n"
                   "    print(f.remote(0))\n")
    result = firebox("run", str(app), env=user_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "click" not in err and "firebox/runtime" not in err and "_sync.py" not in err
    assert f'  File "{app}", line 10, in main\n    print(f.remote(0))' in err
    assert "Remote traceback:" in err and "    return 1 / x" in err
    assert err.rstrip().endswith("Error: the app raised ZeroDivisionError (above).")
