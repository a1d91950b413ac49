"""Classes and their parameters, as `modal.cls` names them."""

from .sdk.cls import Cls, Obj
from .sdk.partial import parameter

__all__ = ["Cls", "Obj", "parameter"]
