"""Retry policies, as `modal.retries` names them."""

from .sdk.retries import Retries

__all__ = ["Retries"]
