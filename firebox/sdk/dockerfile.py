"""Dockerfiles without Docker: each instruction becomes the Image step that does the same, so
a Dockerfile builds on the server like any other image, step by step and cached. dockerfile-parse
reads the file (continuations, comments, quoting, ARG and ENV substitution)."""

from __future__ import annotations

import glob
import io
import json
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter

from ..exception import InvalidError

if TYPE_CHECKING:  # image.py imports this module: its Image is passed in
    from .image import Image

IGNORED = {"CMD", "EXPOSE", "LABEL", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK", "VOLUME",
           "COMMENT"}  # what a function's container has no use for, as in Modal


def build(empty: Image, text: str, context: Path, build_args: dict[str, str],
          force_build: bool, ignore: Sequence[str], name: str) -> Image:
    """The Image a whole Dockerfile describes (over empty, an Image of no steps): it must
    start FROM an image."""
    image = extend(empty, text, context, build_args, force_build, ignore, name)
    if not image._steps or image._steps[0].get("kind") != "registry":
        raise InvalidError(f"{name} has no FROM: a Dockerfile starts from an image.")
    return image


def extend(image: Image, text: str, context: Path, build_args: dict[str, str],
           force_build: bool, ignore: Sequence[str], name: str) -> Image:
    """image with the instructions of text added, in order."""
    steps = _Steps(image, context, build_args, force_build, ignore, name)
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    for entry in parser.structure:
        steps.add(entry["instruction"].upper(), entry["value"], entry["startline"] + 1)
    return steps.image


class _Steps:
    def __init__(self, image: Image, context: Path, build_args: dict[str, str],
                 force_build: bool, ignore: Sequence[str], name: str) -> None:
        self.image, self.context, self.name = image, context, name
        self.args: dict[str, str] = {}
        self.build_args = build_args
        self.env: dict[str, str] = {}
        self.force_build = force_build
        self.ignore = [*ignore, *_dockerignore(context)]
        self.workdir = "/"
        self.froms = 0

    def fail(self, line: int, why: str) -> InvalidError:
        return InvalidError(f"{self.name}, line {line}: {why}")

    def words(self, value: str) -> list[str]:
        return list(WordSplitter(value, args={**self.args, **self.env},
                                 envs=self.env).split(dequote=True))

    def add(self, op: str, value: str, line: int) -> None:
        handler = getattr(self, f"_{op.lower()}", None)
        if op in IGNORED:
            return
        if handler is None:
            raise self.fail(line, f"the {op} instruction is not supported by firebox's "
                                  "Dockerfile builder")
        handler(value, line)

    def _arg(self, value: str, line: int) -> None:
        key, eq, default = value.partition("=")
        key = key.strip()
        self.args[key] = self.build_args.get(key, WordSplitter(default).dequote()
                                             if eq else "")

    def _from(self, value: str, line: int) -> None:
        self.froms += 1
        if self.froms > 1 or self.image._steps:
            raise self.fail(line, "multi-stage builds (a second FROM, or FROM after other "
                                  "steps) are not supported yet; build one stage")
        words = [w for w in self.words(value) if not w.startswith("--platform")]
        if not words or words[0] == "scratch":
            raise self.fail(line, "FROM scratch is not supported; start FROM an image")
        self.image = type(self.image).from_registry(words[0], force_build=self.force_build)

    def _env(self, value: str, line: int) -> None:
        words = self.words(value)
        pairs: dict[str, str] = {}
        if words and "=" not in words[0]:  # the old form: ENV KEY value with blanks
            key, _, rest = value.strip().partition(" ")
            pairs[key] = " ".join(self.words(rest.strip()))
        else:
            for word in words:
                key, eq, val = word.partition("=")
                if not eq:
                    raise self.fail(line, f"ENV {word!r} has no '='")
                pairs[key] = val
        self.env.update(pairs)
        self.image = self.image.env(pairs)

    def _run(self, value: str, line: int) -> None:
        if value.lstrip().startswith("--"):
            raise self.fail(line, "RUN options (--mount, --network) are not supported yet")
        self.image = self.image.run_commands(_shell(value))

    def _workdir(self, value: str, line: int) -> None:
        words = self.words(value)
        path = str(PurePosixPath(self.workdir) / words[0]) if words else self.workdir
        self.workdir = path
        self.image = self.image.run_commands(f"mkdir -p {shlex.quote(path)}").workdir(path)

    def _user(self, value: str, line: int) -> None:
        words = self.words(value)
        if not words:
            raise self.fail(line, "USER needs a user")
        self.image = self.image.user(words[0])

    def _entrypoint(self, value: str, line: int) -> None:
        args = _exec_form(value)
        if args is None:
            raise self.fail(line, "a shell-form ENTRYPOINT ignores its arguments, so "
                                  "firebox's runtime could not start through it: use the JSON "
                                  'form, ending by running them (exec "$@")')
        self.image = self.image.entrypoint(args)

    def _shell(self, value: str, line: int) -> None:
        raise self.fail(line, "SHELL is not supported yet; RUN uses /bin/sh -c")

    def _copy(self, value: str, line: int) -> None:
        self._add_files(value, line, "COPY")

    def _add(self, value: str, line: int) -> None:
        self._add_files(value, line, "ADD")

    def _add_files(self, value: str, line: int, op: str) -> None:
        args = _exec_form(value) or self.words(value)
        owner = None
        while args and args[0].startswith("--"):
            flag, _, val = args.pop(0).partition("=")
            if flag == "--chown":
                owner = val
            elif flag == "--from":
                raise self.fail(line, f"{op} --from needs a multi-stage build, which is not "
                                      "supported yet")
            elif flag != "--chmod" or not val:
                raise self.fail(line, f"{op} {flag} is not supported")
            else:
                raise self.fail(line, f"{op} --chmod is not supported yet; RUN chmod after it")
        if len(args) < 2:
            raise self.fail(line, f"{op} needs a source and a destination")
        *sources, dest = args
        if not dest.startswith("/"):
            dest = str(PurePosixPath(self.workdir) / dest) + ("/" if dest.endswith("/") else "")
        found = []
        for source in sources:
            if "://" in source:
                raise self.fail(line, f"{op} of a URL is not supported; RUN a download instead")
            matches = sorted(glob.glob(str(self.context / source))) or []
            if not matches:
                raise self.fail(line, f"{op}: {source} is not in the build context "
                                      f"{self.context}")
            for match in matches:
                path = Path(match).resolve()
                if not path.is_relative_to(self.context.resolve()):
                    raise self.fail(line, f"{op}: {source} is outside the build context")
                if op == "ADD" and path.is_file() and _is_archive(path):
                    raise self.fail(line, "ADD of a local archive (which Docker unpacks) is not "
                                          "supported yet; COPY it and RUN tar")
                found.append(path)
        as_dir = dest.endswith("/") or len(found) > 1 or found[0].is_dir()
        made = []
        for path in found:
            if path.is_dir():
                self.image = self.image.add_local_dir(path, dest.rstrip("/") or "/", copy=True,
                                                      ignore=self.ignore)
                made.append(dest.rstrip("/") or "/")
            else:
                target = (dest.rstrip("/") + "/" + path.name) if as_dir else dest
                self.image = self.image.add_local_file(path, target, copy=True)
                made.append(target)
        if owner:
            self.image = self.image.run_commands(
                f"chown -R {shlex.quote(owner)} " + " ".join(shlex.quote(m) for m in made))


def _exec_form(value: str) -> list[str] | None:
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        args = json.loads(text)
    except ValueError:
        return None
    return [str(a) for a in args] if isinstance(args, list) else None


def _shell(value: str) -> str:
    args = _exec_form(value)
    return shlex.join(args) if args is not None else value


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst"))


def _dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    return [ln.strip().rstrip("/") for ln in path.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]

