"""Modal's public example apps run on firebox with only their imports rewritten: see
tests/modal_examples/README.md for where their source comes from and how to run these."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import modal_examples
import pytest
from conftest import ServerProcess
from modal_examples.example import (
    SOURCE_ENV,
    Example,
    Runner,
    read_source,
    rewrite_imports,
    sha256,
    source_root,
)

from firebox.wire import settings


def _cases() -> list[Example]:
    cases: list[Example] = []
    for info in pkgutil.iter_modules(modal_examples.__path__):
        if info.name.startswith("cases_"):
            cases += importlib.import_module(f"modal_examples.{info.name}").CASES
    return cases


CASES = _cases()


def test_cases_name_each_example_once():
    paths = [case.path for case in CASES]
    assert len(paths) == len(set(paths))
    assert all(re.fullmatch(r"[0-9a-f]{40}", case.commit) for case in CASES)
    assert all(re.fullmatch(r"[0-9a-f]{64}", case.sha256) for case in CASES)
    assert all(case.command in ("run", "deploy", "python") for case in CASES)


def test_imports_are_rewritten_and_nothing_else():
    source = ("import modal\nimport modal.experimental\nimport modal.gpu as g\n"
              "from modal import App, Image\n    from modal.functions import FunctionCall\n"
              "x = 'import modal'  # import modal\nimage = modal.Image.debian_slim()\n")
    assert rewrite_imports(source) == (
        "import firebox as modal\nimport firebox.experimental; import firebox as modal\n"
        "import firebox.gpu as g\nfrom firebox import App, Image\n"
        "    from firebox.functions import FunctionCall\n"
        "x = 'import modal'  # import modal\nimage = modal.Image.debian_slim()\n")


# Modal's examples ask for GPUs by name; a fake inventory of the common kinds lets those whose work
# runs on a CPU too (cls_with_options) be placed on a machine without one, as test_gpus does.
FAKE_GPUS = "T4:1,L4:1,A10G:1,A100-40GB:1,H100:1"


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if source_root() is None:
        pytest.skip(f"{SOURCE_ENV} is not set: see tests/modal_examples/README.md")
    srv = ServerProcess(tmp_path_factory.mktemp("examples-server"),
                        extra_env={settings.FAKE_GPUS.name: FAKE_GPUS})
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=pytest.mark.timeout(case.timeout + 60))
    for case in CASES])
def test_example_runs_unchanged(case: Example, examples_server: ServerProcess, tmp_path: Path):
    server, root = examples_server, source_root()
    assert root is not None
    for path in (case.path, *case.extra):
        text = read_source(root, path, case.commit)
        if path == case.path:
            assert sha256(text) == case.sha256, (
                f"{root / path} is not the source this case was written for (commit "
                f"{case.commit}); check out that commit")
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite_imports(text))
    env = server.env()
    env.update(FIREBOX_SERVER_URL=server.url, FIREBOX_TOKEN=server.token)
    app_file = tmp_path / case.path
    runner = Runner(server, app_file.parent, env)
    args = list(case.args)
    ref = app_file.name + (args.pop(0) if args and args[0].startswith("::") else "")
    if case.command == "python":
        result = runner.python(*case.flags, ref, *args, timeout=case.timeout)
    else:
        result = runner.firebox(case.command, *case.flags, ref, *args, timeout=case.timeout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    for line in case.expect:
        assert re.search(line, result.stdout, re.MULTILINE), (
            f"{line!r} is not in stdout:\n{result.stdout}\n{result.stderr}")
    if case.check is not None:
        case.check(runner)
