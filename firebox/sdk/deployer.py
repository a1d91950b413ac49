"""What a deploy says of where it came from, for `firebox app history`: this client's firebox
version and the git commit of the app's directory ("*" after it when it has uncommitted
changes), as Modal's history shows them."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def client_version() -> str:
    try:
        return metadata.version("firebox")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return ""


def git_commit(directory: Path) -> str:
    """The commit checked out where the app's file is, or "" outside a repository (or without
    git): never an error, a deploy does not depend on it."""
    try:
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    commit = head.stdout.strip()[:40]
    return commit + ("*" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def deployer(app_file: str | None) -> dict[str, str]:
    return {"version": client_version(),
            "commit": git_commit(Path(app_file).resolve().parent) if app_file else ""}
