"""Output settings, as `modal.output` names them."""

from collections.abc import Iterator
from contextlib import contextmanager

from .sdk import reporting


@contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Show on stderr what app.run() and deploys do, as `firebox run` does: each step, image
    builds and, where stderr is a terminal, a progress bar per map (show_progress=False: no
    bars). Container output is shown in app.run() with or without it."""
    # Here, not above: rich's progress bars take 80 ms to import, which `import firebox` (and
    # so every container) would pay.
    from .sdk.live import LiveReporter

    with reporting.use(LiveReporter(show_progress=show_progress)):
        yield


__all__ = ["enable_output"]
