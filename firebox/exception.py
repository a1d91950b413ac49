"""The exception classes under the module name Modal's client uses, so that
`from modal.exception import InvalidError` works as `from firebox.exception import ...`."""

from .exceptions import *  # noqa: F403
from .exceptions import __all__  # noqa: F401
