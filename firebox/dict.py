"""Dicts, as `modal.dict` names them."""

from .sdk.dict import Dict

__all__ = ["Dict"]
