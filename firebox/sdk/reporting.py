"""What the SDK tells the user while it works: image builds, the steps of bringing an app up,
and a map's progress. A plain script gets the quiet Reporter below; `firebox run`, `firebox
deploy` and enable_output() put a live one (sdk/live.py) in its place."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Protocol

from ..wire import build_events


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
    """The reporting a plain script gets: an image build's steps as lines on stderr (a build
    can take minutes, and silence would look like a hang), and nothing else."""

    def image_event(self, event: dict[str, Any]) -> None:
        kind = event.get(build_events.TAG)
        if kind == build_events.STEP:
            state = ("cached" if event.get("layer") else "set") if event.get("cached") \
                else "building"
            _err(f"[image] step {event['index']}/{event['total']} {event['label']}: {state}")
        elif kind == build_events.LOG:
            _err(f"[image]   {event['text']}")
        elif kind == build_events.BUILT:
            _err(f"[image] step {event['index']} built in {event['seconds']} s "
                 f"({event['size_bytes'] / 1e6:.1f} MB)")

    def image_done(self, image_id: str, built: int, seconds: float) -> None:
        """The image is ready: built steps of it were built now (0: every one was cached)."""

    def step(self, text: str, items: list[str] | None = None) -> None:
        """A step of bringing an app up is done (text like "Created objects."), with what it
        made, if anything, one line each."""

    def map_started(self, label: str) -> MapProgress | None:
        """A map over label (the function's name) begins; None: nothing to show for it."""
        return None


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
