"""A call's graph as Modal's modal.call_graph gives it: InputInfo trees with InputStatus."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .. import wire
from ..wire import calls as wire_calls


class InputStatus(IntEnum):
    """Enum representing status of a function input."""

    # Modal's numbers (its GenericResult statuses), so values compare as they do there.
    PENDING = 0
    SUCCESS = 1
    FAILURE = 2
    TERMINATED = 3
    TIMEOUT = 4
    INIT_FAILURE = 5

    @classmethod
    def _missing_(cls, value: object) -> InputStatus:
        return cls.PENDING


_STATUSES = {wire.SUCCESS: InputStatus.SUCCESS, wire.FAILURE: InputStatus.FAILURE,
             wire.TIMEOUT: InputStatus.TIMEOUT, wire.CANCELLED: InputStatus.TERMINATED,
             wire_calls.INIT_FAILURE: InputStatus.INIT_FAILURE,
             wire_calls.PENDING: InputStatus.PENDING}


@dataclass
class InputInfo:
    """Simple data structure storing information about a function input."""

    input_id: str
    function_call_id: str
    task_id: str
    status: InputStatus
    function_name: str
    module_name: str
    children: list[InputInfo] = field(default_factory=list)


def reconstruct(reply: wire_calls.GraphReply | dict[str, Any]) -> list[InputInfo]:
    """The trees of a graph's inputs (parents come before their children), one per input of
    the call asked about."""
    roots: list[InputInfo] = []
    by_id: dict[str, InputInfo] = {}
    for item in reply["inputs"]:
        info = InputInfo(item["input_id"], item["function_call_id"], item["task_id"],
                         _STATUSES.get(item["status"], InputStatus.PENDING),
                         item["function_name"], item["module_name"])
        by_id[info.input_id] = info
        parent = by_id.get(item["parent_input_id"] or "")
        (roots if parent is None else parent.children).append(info)
    return roots


__all__ = ["InputInfo", "InputStatus"]
