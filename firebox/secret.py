"""Secrets, as `modal.secret` names them."""

from .sdk.secret import Secret

__all__ = ["Secret"]
