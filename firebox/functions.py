"""Functions and their calls, as `modal.functions` names them."""

from .sdk.function import Function
from .sdk.function_call import FunctionCall

__all__ = ["Function", "FunctionCall"]
