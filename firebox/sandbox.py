"""Sandboxes, as `modal.sandbox` names them."""

from .sdk.sandbox import Sandbox

__all__ = ["Sandbox"]
