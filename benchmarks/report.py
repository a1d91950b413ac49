"""Writes one benchmark's results into its own section of docs/benchmarks.md."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the command it names, side by side in one run on one machine.
These machines are noisy: read the medians and the ratios, not single numbers.
"""


def write_section(name: str, title: str, command: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    block = (f"{start}\n## {title}\n\nReproduce: `{command}` ({when}, {machine})\n\n"
             f"{body.strip()}\n{end}")
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
