"""Queues, as `modal.queue` names them."""

from .sdk.queue import Queue

__all__ = ["Queue"]
