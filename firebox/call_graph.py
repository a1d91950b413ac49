"""A call's graph, as `modal.call_graph` names it."""

from .sdk.call_graph import InputInfo, InputStatus

__all__ = ["InputInfo", "InputStatus"]
