"""Function.from_name and Cls.from_name with version=: a deployed version of the app, as it was
deployed (its code and its spec), served by containers of its own beside the current version."""

from __future__ import annotations

from pathlib import Path

import pytest

import firebox
from firebox.exception import InvalidError, NotFoundError

SOURCE = """if True:
    import os
    import firebox
    app = firebox.App("test-versions")

    @app.function(secrets=[firebox.Secret.from_dict({"SPEC_OF": VERSION})])
    def which():
        return VERSION, os.environ.get("SPEC_OF")

    @app.cls()
    class Model:
        k: int = firebox.parameter(default=1)

        @firebox.method()
        def tag(self):
            return VERSION * self.k
    EXTRA
"""


def _deploy(server, path: Path, version: str, extra: str = "", app: str = "test-versions"
            ) -> None:
    path.write_text(SOURCE.replace("VERSION", repr(version)).replace("EXTRA", extra)
                    .replace("test-versions", app))
    result = server.cli("deploy", str(path))
    assert result.returncode == 0, result.stderr


def test_a_pinned_version_runs_that_versions_code(server, tmp_path: Path):
    path = tmp_path / "versions.py"
    gone = '@app.function()\n    def gone():\n        return "gone"'
    _deploy(server, path, "one", gone)
    _deploy(server, path, "two")

    current = firebox.Function.from_name("test-versions", "which")
    first = firebox.Function.from_name("test-versions", "which", version=1)
    assert current.remote() == ("two", "two")
    assert first.remote() == ("one", "one")  # v1's code, and v1's spec (its secret)
    assert first.spawn().get() == ("one", "one")
    latest = firebox.Function.from_name("test-versions", "which", version=2)
    assert latest.remote() == ("two", "two")
    assert latest.object_id == current.object_id  # the current version is the function itself
    assert first.object_id != current.object_id  # a past one has containers of its own

    Model = firebox.Cls.from_name("test-versions", "Model", version=1)
    assert Model(k=2).tag.remote() == "oneone"
    assert firebox.Cls.from_name("test-versions", "Model")(k=2).tag.remote() == "twotwo"

    # A function the current version left out is still there in the version that had it.
    assert firebox.Function.from_name("test-versions", "gone", version=1).remote() == "gone"
    with pytest.raises(NotFoundError, match=r"has no function or class 'gone'"):
        firebox.Function.from_name("test-versions", "gone", version=2).remote()  # the current

    # A rollback makes a new version; v1 pinned still answers as v1 did.
    assert server.cli("app", "rollback", "test-versions", "v1").returncode == 0
    assert current.remote() == ("one", "one")
    assert firebox.Function.from_name("test-versions", "which", version=2).remote() == ("two",
                                                                                      "two")
    with pytest.raises(NotFoundError, match=r"had no function or class 'gone' in v2 "
                                            r"\(it had: Model, which\)"):
        firebox.Function.from_name("test-versions", "gone", version=2).remote()


def test_a_version_that_is_not_there_says_where_to_look(server, tmp_path: Path):
    path = tmp_path / "versions.py"
    _deploy(server, path, "only", app="test-versions-once")
    with pytest.raises(NotFoundError, match=r"no version v7 \(it has: v1\); "
                                            r"`firebox app history test-versions-once` lists them"):
        firebox.Function.from_name("test-versions-once", "which", version=7).remote()
    with pytest.raises(NotFoundError, match="no version v9"):
        firebox.Cls.from_name("test-versions-once", "Model", version=9)(k=2).tag.remote()
    with pytest.raises(InvalidError, match="give its number, like version=3"):
        firebox.Function.from_name("test-versions-once", "which", version="v1")
    with pytest.raises(InvalidError, match="give its number"):
        firebox.Cls.from_name("test-versions-once", "Model", version=0)
