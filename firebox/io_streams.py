"""A sandbox process's streams, as `modal.io_streams` names them."""

from .sdk.sandbox import StreamReader, StreamWriter

__all__ = ["StreamReader", "StreamWriter"]
