"""Images, as `modal.image` names them."""

from .sdk.image import Image

__all__ = ["Image"]
