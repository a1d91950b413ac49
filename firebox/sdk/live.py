"""The reporting of `firebox run`, `firebox deploy` and enable_output(), drawn with rich on
stderr: each step of bringing an app up as it happens, image builds, and a live progress bar per
map (done, failed, in flight, rate) where stderr is a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..wire import build_events
from .reporting import MapProgress, Reporter


class LiveReporter(Reporter):
    def __init__(self, console: Console | None = None, show_progress: bool = True) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.show_progress = show_progress
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._maps = 0  # maps in progress: the bars share one live display
        self._total_steps = 0

    def _print(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style), soft_wrap=True)

    def step(self, text: str, items: list[str] | None = None) -> None:
        self._print(f"✓ {text}", "green")
        for i, item in enumerate(items or []):
            self._print(("└── " if i == len(items or []) - 1 else "├── ") + item)

    def image_event(self, event: dict[str, Any]) -> None:
        kind = event.get(build_events.TAG)
        if kind == build_events.STEP:
            self._total_steps = event["total"]
            if not event.get("cached"):
                self._print(f"=> Image step {event['index']}/{event['total']}: "
                            f"{event['label']}", "bold")
        elif kind == build_events.LOG:
            self._print(f"   {event['text']}", "dim")
        elif kind == build_events.BUILT:
            self._print(f"   step {event['index']}/{self._total_steps} built in "
                        f"{event['seconds']:.1f}s ({event['size_bytes'] / 1e6:.1f} MB)", "dim")

    def image_done(self, image_id: str, built: int, seconds: float) -> None:
        if built:
            self.step(f"Built image {image_id} in {seconds:.1f}s.")
        else:
            self.step(f"Image {image_id} is ready; no step of it needed building.")

    def map_started(self, label: str) -> MapProgress | None:
        if not (self.show_progress and self.console.is_terminal):
            return None  # a log file gets no bar redrawn ten times a second
        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                    console=self.console, transient=True,
                    # The user's own output goes on to stdout, unless it shares the terminal.
                    redirect_stdout=sys.stdout.isatty(),
                )
                self._progress.start()
            self._maps += 1
            task = self._progress.add_task(f"{label}.map", total=None, counts="starting")
        return _Bar(self, self._progress, task, label)

    def _ended(self, task: TaskID, summary: str) -> None:
        with self._lock:
            assert self._progress is not None
            self._progress.remove_task(task)
            self._maps -= 1
            if self._maps == 0:
                self._progress.stop()
                self._progress = None
        self.step(summary)


class _Bar:
    """One map's counts, shown in its task of the shared progress display."""

    def __init__(self, reporter: LiveReporter, progress: Progress, task: TaskID,
                 label: str) -> None:
        self.reporter, self.progress, self.task, self.label = reporter, progress, task, label
        self.submitted = self.succeeded = self.failed = 0
        self.started = time.monotonic()
        self.closed = False

    def _counts(self) -> str:
        running = self.submitted - self.succeeded - self.failed
        return (f"{self.succeeded} done · {self.failed} failed · {running} in progress · "
                f"{self._rate():.0f}/s")

    def _rate(self) -> float:
        return (self.succeeded + self.failed) / max(time.monotonic() - self.started, 1e-3)

    def _show(self) -> None:
        self.progress.update(self.task, total=self.submitted,
                             completed=self.succeeded + self.failed, counts=self._counts())

    def sent(self, count: int) -> None:
        self.submitted += count
        self._show()

    def finished(self, succeeded: int, failed: int) -> None:
        self.succeeded += succeeded
        self.failed += failed
        self._show()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        ended = self.succeeded + self.failed
        left = f", {self.submitted - ended} not finished" if ended < self.submitted else ""
        self.reporter._ended(self.task, (
            f"{self.label}.map: {self.succeeded} done, {self.failed} failed{left} in "
            f"{time.monotonic() - self.started:.1f}s ({self._rate():.0f}/s)."))
