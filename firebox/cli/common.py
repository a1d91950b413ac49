"""Helpers the `firebox` command groups share."""

from __future__ import annotations

import datetime
from typing import Any

from .. import _sync
from .. import client as client_mod


def request(method: str, path: str, **kwargs: Any) -> Any:
    return _sync.run(client_mod.current().request(method, path, **kwargs))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
