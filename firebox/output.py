"""Output settings, as `modal.output` names them."""

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Accepted for Modal compatibility: firebox always shows container output in app.run()."""
    yield


__all__ = ["enable_output"]
