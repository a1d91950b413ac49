"""Helpers the `firebox` command groups share."""

from __future__ import annotations

import datetime
from typing import Any

from .. import _sync
from .. import client as client_mod
from ..sdk.runner import print_log_line


def request(method: str, path: str, **kwargs: Any) -> Any:
    return _sync.run(client_mod.current().request(method, path, **kwargs))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


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
