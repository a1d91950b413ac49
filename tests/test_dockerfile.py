"""Dockerfiles as Image steps (sdk/dockerfile.py), instruction by instruction, with no server:
what each becomes, and the instructions refused with their line number."""

from __future__ import annotations

import pytest

import firebox as modal
from firebox.exception import InvalidError


def steps(image: modal.Image) -> list[tuple[str, object]]:
    out = []
    for s in image._steps:
        kind = s["kind"]
        value = {"registry": s.get("tag"), "run": s.get("commands"), "env": s.get("env"),
                 "workdir": s.get("path"), "user": s.get("user"), "entrypoint": s.get("args"),
                 "copy": sorted(s.get("files") or {})}[kind]
        out.append((kind, value))
    return out


def test_each_instruction_becomes_its_step(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("print(1)\n")
    (tmp_path / "README").write_text("r\n")
    (tmp_path / "Dockerfile").write_text("""\
ARG VERSION=1
ARG BASE
FROM registry.local:5000/base:${VERSION} AS runtime
LABEL maintainer=someone
ENV HOME_DIR=/srv LEVEL="two words"
ENV OLD form with blanks
WORKDIR $HOME_DIR
RUN echo one && \\
    echo two
RUN ["echo", "json form"]
COPY src ./code
COPY README /etc/
USER 1000:1000
ENTRYPOINT ["/bin/sh", "-c", "exec \\"$@\\"", "--"]
CMD ["python"]
""")
    image = modal.Image.from_dockerfile(tmp_path / "Dockerfile", build_args={"VERSION": "2"})
    assert steps(image) == [
        ("registry", "registry.local:5000/base:2"),
        ("env", {"HOME_DIR": "/srv", "LEVEL": "two words"}),
        ("env", {"OLD": "form with blanks"}),
        ("run", ["mkdir -p /srv"]), ("workdir", "/srv"),
        ("run", ["echo one &&     echo two"]), ("run", ["echo 'json form'"]),
        ("copy", ["/srv/code/a.py"]), ("copy", ["/etc/README"]),
        ("user", "1000:1000"), ("entrypoint", ["/bin/sh", "-c", 'exec "$@"', "--"]),
    ]


@pytest.mark.parametrize(("text", "error"), [
    ("RUN echo hi", "has no FROM"),
    ("FROM a/b:1\nFROM c/d:2", "line 2: multi-stage"),
    ("FROM a/b:1\nCOPY --from=build /x /y", "line 2: COPY --from needs a multi-stage"),
    ("FROM scratch", "line 1: FROM scratch"),
    ("FROM a/b:1\nADD https://example.com/x /x", "line 2: ADD of a URL"),
    ("FROM a/b:1\nENTRYPOINT run.sh", "line 2: a shell-form ENTRYPOINT"),
    ("FROM a/b:1\nRUN --mount=type=cache,target=/c echo", "line 2: RUN options"),
    ("FROM a/b:1\nSHELL [\"/bin/bash\", \"-c\"]", "line 2: SHELL"),
    ("FROM a/b:1\nCOPY missing.txt /x", "line 2: COPY: missing.txt is not in the build"),
    ("FROM a/b:1\nONBUILD RUN x", "line 2: the ONBUILD instruction is not supported"),
])
def test_what_it_cannot_build_is_refused_with_the_line(tmp_path, text, error):
    (tmp_path / "Dockerfile").write_text(text + "\n")
    with pytest.raises(InvalidError, match=error):
        modal.Image.from_dockerfile(tmp_path / "Dockerfile")


def test_dockerfile_commands_extend_any_image_and_a_missing_file_is_named(tmp_path):
    image = modal.Image.debian_slim().dockerfile_commands(["RUN apt-get update", "ENV A=1"])
    assert steps(image) == [("run", ["apt-get update"]), ("env", {"A": "1"})]
    with pytest.raises(InvalidError, match="nope is not a file"):
        modal.Image.from_dockerfile(tmp_path / "nope")
    with pytest.raises(InvalidError, match="add_python='3.99'"):
        modal.Image.from_registry("a/b:1", add_python="3.99")
    with pytest.raises(InvalidError, match="applies to images from a registry"):
        modal.Image.debian_slim().entrypoint([])
