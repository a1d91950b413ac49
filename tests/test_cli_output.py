"""What the CLI prints, as a user sees it: tables drawn with rich that keep their columns whole
when a name is longer than its column, --json as it was, a live progress bar for a long map, and
the steps of a deploy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from helpers import eventually
from test_cli import client_env

from firebox.cli.main import main

LONG_APP = "test-output-" + "a" * 48  # 60 characters
LONG_FUNCTION = "function_with_a_name_" + "b" * 39  # 60 characters
assert len(LONG_APP) == len(LONG_FUNCTION) == 60

WIDE_APP = f"""if True:
    import firebox
    app = firebox.App("{LONG_APP}")

    @app.function(min_containers=1)
    def {LONG_FUNCTION}(x):
        return x

    @app.function(image=firebox.Image.debian_slim().env({{"OUTPUT_TEST": "1"}}))
    @firebox.fastapi_endpoint()
    def web():
        return "hi"
"""


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory: pytest.TempPathFactory):
    """The app of long names, deployed with a warm container; stopped after the tests."""
    path = tmp_path_factory.mktemp("wide") / "wide.py"
    path.write_text(WIDE_APP)
    result = server.cli("deploy", str(path))
    assert result.returncode == 0, result.stderr
    yield result
    server.cli("app", "stop", LONG_APP)


def cli(*args: str, columns: int | None = None) -> str:
    """The command's stdout, run in-process as into a pipe (COLUMNS set: as on a terminal that
    wide)."""
    result = CliRunner().invoke(main, list(args),
                                env={"COLUMNS": str(columns) if columns else None})
    assert result.exit_code == 0, result.output
    return result.stdout


def rows_of(table: str, first: str) -> list[list[str]]:
    """Each row of a table whose rows start with an id beginning with first: the lines it spans
    (a long name folds into the lines below its row's first)."""
    rows: list[list[str]] = []
    for line in table.splitlines():
        if line.startswith(first):
            rows.append([line])
        elif rows and line.startswith(" "):
            rows[-1].append(line)
    return rows


def column_at(header: str, name: str) -> int:
    return header.index(name)


def test_long_names_fold_in_their_column_and_the_others_stay_whole(deployed):
    for columns in (80, None):
        table = cli("app", "list", columns=columns)
        header = table.splitlines()[0]
        assert header.split() == ["APP", "ID", "NAME", "STATE", "FUNCS", "CONTAINERS", "CREATED"]
        assert all(len(line) <= 80 for line in table.splitlines()) or columns is None
        [row] = [r for r in rows_of(table, "ap-") if LONG_APP[:8] in r[0]]
        first = row[0]
        # The id is whole, and every column's cell starts under its header.
        assert first.split()[0].startswith("ap-") and len(first.split()[0]) == 19
        name = "".join(line[column_at(header, "NAME"):column_at(header, "STATE")].strip()
                       for line in row)
        assert name == LONG_APP
        assert first[column_at(header, "STATE"):].split()[0] == "deployed"
        assert first[column_at(header, "CREATED"):].strip()[:2] == "20"  # a whole timestamp
        if columns is None:  # into a pipe each row is one line, for grep
            assert len(row) == 1 and LONG_APP in first

    containers = eventually(lambda: [r for r in rows_of(cli("container", "list", columns=80),
                                                        "ta-")
                                     if LONG_APP[:8] in "".join(r)], timeout=30)
    assert containers
    table = cli("container", "list", columns=80)
    header = table.splitlines()[0]
    for row in rows_of(table, "ta-"):
        assert len(row[0].split()[0]) == 19  # the container id is whole
        assert row[0][column_at(header, "STATE"):].split()[0].isalpha()
    [row] = containers
    function = "".join(line[column_at(header, "FUNCTION"):column_at(header, "STATE")].strip()
                       for line in row)
    assert function == LONG_FUNCTION


def test_json_is_unchanged(deployed):
    apps = json.loads(cli("app", "list", "--json"))
    [mine] = [a for a in apps if a["name"] == LONG_APP]
    assert set(mine) >= {"app_id", "name", "state", "functions", "containers", "created_at"}
    assert mine["state"] == "deployed"


def test_a_pipe_gets_no_colour_and_no_trailing_spaces(deployed, tmp_path: Path):
    table = cli("app", "list", columns=80)
    assert "\x1b[" not in table
    assert all(line == line.rstrip() for line in table.splitlines())


MAPPER = """if True:
    import firebox
    app = firebox.App("test-output-mapper")

    @app.function(serialized=True)
    @firebox.concurrent(max_inputs=100)
    def square(x):
        if x < 0:
            raise ValueError("no negatives")
        return x * x

    @app.local_entrypoint()
    def main(n: int = 2000):
        print(sum(square.map(range(n))))
        results = list(square.map([1, 2, -1], return_exceptions=True))
        print(sum(r for r in results if isinstance(r, int)))
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_long_map_shows_its_progress_on_a_terminal(server, tmp_path: Path):
    path = tmp_path / "mapper.py"
    path.write_text(MAPPER)
    # rich draws its live bar when stderr is a terminal; TTY_COMPATIBLE=1 says it is one.
    env = client_env(server) | {"TTY_COMPATIBLE": "1", "COLUMNS": "120"}
    result = subprocess.run([sys.executable, "-m", "firebox.cli.main", "run", str(path)],
                            env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(sum(x * x for x in range(2000))), "5"]
    err = ANSI.sub("", result.stderr)
    # Redrawn while it runs: done, failed, in flight and the rate.
    assert re.search(r"square\.map .* \d+ done · 0 failed · \d+ in progress · \d+/s", err)
    summaries = [line for line in err.splitlines() if line.startswith("✓ square.map: ")]
    assert len(summaries) == 2, err
    assert summaries[0].startswith("✓ square.map: 2000 done, 0 failed in ")
    assert summaries[1].startswith("✓ square.map: 2 done, 1 failed in ")
    assert err.splitlines()[-1] == "✓ App completed."

    # Into a pipe (a log file, CI) the same run draws no bar.
    env.pop("TTY_COMPATIBLE")
    piped = subprocess.run([sys.executable, "-m", "firebox.cli.main", "run", str(path),
                            "--n", "5"], env=env, capture_output=True, text=True, timeout=120,
                           cwd=REPO)
    assert piped.returncode == 0, piped.stderr
    assert "square.map" not in piped.stderr and "\x1b[" not in piped.stderr


def test_deploy_prints_its_steps_in_order(deployed):
    steps = deployed.stderr.splitlines()
    image = next(i for i, s in enumerate(steps) if s.startswith("✓ Image im-"))
    created = steps.index("✓ Created objects.")
    assert image < created
    assert steps[created + 1].startswith("├── Created mount of the code: 1 file, ")
    assert steps[created + 2] == f"├── Created function {LONG_FUNCTION}."
    assert steps[created + 3].startswith("└── Created web function web => http://")
    assert re.fullmatch(r"✓ App deployed in \d+\.\ds!", steps[created + 4])
    # The summary stays on stdout, as before.
    assert deployed.stdout.startswith(f"Deployed app '{LONG_APP}' (ap-")
    assert "  web => http://" in deployed.stdout


SCRIPT = """if True:
    import sys
    import firebox
    app = firebox.App("test-output-script")

    @app.function(serialized=True)
    def double(x):
        return 2 * x

    with app.run(show_logs=False):
        double.map(range(20))
    print("-- enable_output --", file=sys.stderr, flush=True)
    with firebox.enable_output(), app.run(show_logs=False):
        print(sum(double.map(range(20))))
"""


def test_a_plain_script_stays_quiet_unless_it_enables_output(server, tmp_path: Path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    env = client_env(server) | {"TTY_COMPATIBLE": "1"}
    result = subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "380\n"
    quiet, _, enabled = ANSI.sub("", result.stderr).partition("-- enable_output --\n")
    assert quiet == ""
    lines = enabled.splitlines()
    assert lines[0].startswith("✓ Initialized app ap-") and "✓ Created objects." in lines
    assert any(line.startswith("✓ double.map: 20 done, 0 failed in ") for line in lines)
