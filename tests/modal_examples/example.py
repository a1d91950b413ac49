"""One Modal example app as a test case: where its source is, how it is run, what it prints."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SOURCE_ENV = "FIREBOX_MODAL_EXAMPLES"

# `import modal` and its forms, as lines; nothing else in an app is touched.
_IMPORT = re.compile(r"^(?P<indent>[ \t]*)import modal(?P<rest>(?:\.[\w.]+)?(?: as \w+)?)[ \t]*$",
                     re.MULTILINE)
_FROM = re.compile(r"^(?P<indent>[ \t]*)from modal(?P<mod>(?:\.[\w.]+)?) import ", re.MULTILINE)


def rewrite_imports(source: str) -> str:
    """Modal's imports become firebox's, the one change a user makes to run a Modal app."""

    def plain(match: re.Match[str]) -> str:
        indent, rest = match["indent"], match["rest"]
        if not rest:
            return f"{indent}import firebox as modal"
        if " as " in rest:  # import modal.x as y
            module, alias = rest.split(" as ")
            return f"{indent}import firebox{module} as {alias}"
        # `import modal.x` binds `modal` with x loaded on it.
        return f"{indent}import firebox{rest}; import firebox as modal"

    source = _IMPORT.sub(plain, source)
    return _FROM.sub(lambda m: f"{m['indent']}from firebox{m['mod']} import ", source)


@dataclass(frozen=True)
class Example:
    """path/commit/sha256 name the upstream source; `command` is how a user starts it
    (`run`, `deploy`, or `python` for a script that looks up its app and starts sandboxes
    itself), `args` what follows the file ref (`::main`, `--n`, `3`); `expect` are
    lines (regular expressions) stdout must hold; `check`, when given, is called with the
    Runner after the command succeeded, for what a user checks by hand (a web page, a
    deployed function)."""

    path: str
    commit: str
    sha256: str
    command: str = "run"
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # the command's own options, before the file ref (`--detach`)
    expect: tuple[str, ...] = ()
    check: Callable[[Runner], None] | None = None
    extra: tuple[str, ...] = ()  # other upstream files the app imports or reads, same dir tree
    timeout: float = 300
    why: str = ""  # the reason for the inputs given, when not the app's own defaults

    @property
    def id(self) -> str:
        return self.path.removesuffix(".py").replace("/", ":")


def source_root() -> Path | None:
    value = os.environ.get(SOURCE_ENV)
    return Path(value).expanduser() if value else None


def read_source(root: Path, path: str, commit: str) -> str:
    if (root / ".git").exists():
        return subprocess.run(["git", "-C", str(root), "show", f"{commit}:{path}"],
                              capture_output=True, text=True, check=True).stdout
    return (root / path).read_text()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Runner:
    """Runs one example's files from a work directory against a firebox server."""

    server: object  # conftest.ServerProcess
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    last: subprocess.CompletedProcess[str] | None = None

    def firebox(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.python("-m", "firebox.cli.main", *args, timeout=timeout)

    def python(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`python ARGS` as a user runs a script that talks to the server itself."""
        import sys

        self.last = subprocess.run([sys.executable, *args], env=self.env, cwd=self.workdir,
                                   capture_output=True, text=True, timeout=timeout)
        return self.last

    def web_url(self, app: str, function: str) -> str:
        """The URL of a deployed web function, as the SDK gives it."""
        code = ("import firebox; print(firebox.Function.from_name("
                f"{app!r}, {function!r}).get_web_url())")
        import sys

        out = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=self.workdir,
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.strip()
