"""Apps, as `modal.app` names them."""

from .sdk.app import App

__all__ = ["App"]
