"""Helpers the `firebox` command groups share."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .. import _sync
from .. import client as client_mod
from ..sdk.runner import print_log_line


def request(method: str, path: str, **kwargs: Any) -> Any:
    return _sync.run(client_mod.current().request(method, path, **kwargs))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fixed(header: str, *, number: bool = False) -> Column:
    """A column whose cells never wrap: ids, states, times and numbers stay whole on one line
    (numbers right-aligned); the table's other columns make room for it."""
    return Column(header, no_wrap=True, justify="right" if number else "left")


def print_table(columns: Sequence[str | Column], rows: Iterable[Sequence[object]]) -> None:
    """Print rows under columns, drawn by rich. On a terminal (or with COLUMNS set) the table
    fits its width: a long name folds within its own column, a column given as a plain header,
    instead of pushing the others. Into a pipe or a file each row stays on one line, as wide as
    it needs, for grep and awk, and without colour. Cells are shown as text, never read as rich
    markup."""
    table = Table(*(c if isinstance(c, Column) else Column(c, overflow="fold") for c in columns),
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold", highlight=False)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        natural = console.measure(table, options=console.options.update_width(10**6)).maximum
        console.width = max(80, natural)
    with console.capture() as captured:
        console.print(table)
    # Rich pads every line to the table's width; a pipe or a file gets no trailing spaces.
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_logs(path: str, follow: bool) -> None:
    """Print the log lines at path (an app's or a container's), following them if asked, until
    they end or Ctrl-C."""
    async def stream() -> None:
        params = {"follow": "1" if follow else "0"}
        async for line in client_mod.current().stream_lines(path, params):
            print_log_line(line)

    try:
        _sync.run(stream())
    except KeyboardInterrupt:
        pass
