"""What the SDK tells the user while it works: a map's progress. A plain script gets the quiet
Reporter below; `firebox run` and enable_output() put a live one (sdk/live.py) in its place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class MapProgress(Protocol):
    """One map's (or starmap's, for_each's) inputs, counted where the client sees them: no
    request of its own is made for it. Called on firebox's event loop."""

    def sent(self, count: int) -> None:
        """count more inputs were accepted by the server."""

    def finished(self, succeeded: int, failed: int) -> None:
        """That many more inputs ended, well or with an exception."""

    def close(self) -> None:
        """The map is over: every input ended, or the caller stopped reading (or one failed)."""


class Reporter:
    """The reporting a plain script gets: none."""

    def step(self, text: str) -> None:
        """A step is done (text like "square.map: 2000 done, 0 failed in 3.1s.")."""

    def map_started(self, label: str) -> MapProgress | None:
        """A map over label (the function's name) begins; None: nothing to show for it."""
        return None


_current: Reporter = Reporter()


def current_reporter() -> Reporter:
    return _current


@contextlib.contextmanager
def use(reporter: Reporter) -> Iterator[Reporter]:
    """Report through reporter for the block; the one before comes back after it."""
    global _current
    before, _current = _current, reporter
    try:
        yield reporter
    finally:
        _current = before
