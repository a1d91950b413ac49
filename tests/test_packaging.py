"""Packaging: pyproject.toml asks for ranges and uv.lock holds the exact versions inside them."""

from __future__ import annotations

import tomllib

from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCK = tomllib.loads((REPO / "uv.lock").read_text())["package"]

REQUIREMENTS = [(group, Requirement(line)) for group, lines in
                [("dependencies", PYPROJECT["dependencies"]),
                 *PYPROJECT["optional-dependencies"].items()]
                for line in lines]


def test_every_dependency_is_a_range_with_the_locked_version_inside_it():
    locked = {canonicalize_name(p["name"]): p["version"] for p in LOCK}
    for group, req in REQUIREMENTS:
        operators = {spec.operator for spec in req.specifier}
        assert operators == {">=", "<"}, f"{req} ({group}) should be a range: >=floor,<ceiling"
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} ({group}) is not in uv.lock: run `uv lock`"
        assert req.specifier.contains(version, prereleases=True), (req, version)


def test_the_lock_was_made_from_this_pyproject():
    # What `uv sync --locked` (scripts/install.sh) checks before it installs anything.
    project = next(p for p in LOCK if p["name"] == "firebox")
    in_lock = {(canonicalize_name(r["name"]), SpecifierSet(r.get("specifier", "")),
                r.get("marker", "")) for r in project["metadata"]["requires-dist"]}
    in_pyproject = {(canonicalize_name(req.name), req.specifier,
                     "" if group == "dependencies" else f"extra == '{group}'")
                    for group, req in REQUIREMENTS}
    assert in_lock == in_pyproject, "uv.lock is out of date: run `.venv/bin/uv lock`"
    assert set(project["metadata"]["provides-extras"]) == set(PYPROJECT["optional-dependencies"])
