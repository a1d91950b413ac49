"""The requests of a call between client and control plane, and the call channel's frames.

A client sends a call's inputs (CallRequest) and reads its outputs (OutputsRequest), over HTTP
(`POST /v1/calls`, `POST /v1/calls/{call_id}/outputs`) or as numbered frames on the call
channel (`/v1/calls/ws`). These are plain dicts, packed as msgpack maps as they are: the SDK
builds them, and the server checks each against its model (server/api/requests.py), which
takes the same keys.
"""

# No `from __future__ import annotations`: a TypedDict would compile each string annotation.
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

# How a call was made; the server runs a new "remote" call of one input at once (see
# server/core/calls.py), and stores the others before it runs them.
Kind = Literal["call", "remote", "generator", "spawn", "map", "spawn_map"]
SCHEDULE: Literal["schedule"] = "schedule"  # a call the control plane made for a schedule

# An output, as the server returns it: (seq, input index, status, data).
Output = tuple[int, int, str, bytes | None]


class CallRequest(TypedDict):
    """A call's inputs in: the call is made with its first request, by the id the client
    chose, and later requests add inputs to it. Inputs are numbered by the client, so a request
    sent again adds nothing twice."""

    call_id: str  # see wire.ids.new_call_id
    function_id: str
    kind: Kind
    method: str | None  # the method of a class called
    params: bytes | None  # a class instance's parameters, serialized
    inputs: list[tuple[int, bytes]]  # (index, serialized (args, kwargs)); a list on the wire
    wait: float  # seconds to wait for a first output, answered with the request
    # The input whose code makes the call, inside a container: the call is its child in
    # FunctionCall.get_call_graph.
    parent_input_id: NotRequired[str]


class CallReply(TypedDict):
    call_id: str
    accepted: int  # inputs new to the server
    outputs: list[Output]


class OutputsRequest(TypedDict):
    """A call's outputs out: those after `after` (a seq), waiting up to `wait` seconds."""

    after: int
    wait: float


class OutputsReply(TypedDict):
    outputs: list[Output]


# ---- a call's graph (GET /v1/calls/{call_id}/graph) ----------------------------------------

PENDING = "pending"  # a graph input's status while it has no outcome; else its output's status
INIT_FAILURE = "init_failure"  # it failed without reaching a container: none could start
MAX_GRAPH_INPUTS = 10_000  # a graph with more inputs is refused, not built


class GraphInput(TypedDict):
    """One input of a call's graph: the call's own inputs, then those of the calls they made
    (parent_input_id: the input that made the call), parents before their children."""

    input_id: str
    function_call_id: str
    parent_input_id: str | None  # None for the inputs of the call asked about
    task_id: str  # the container that ran it (or runs it); "" while none has
    status: str  # a terminal status (wire.SUCCESS, ...), INIT_FAILURE or PENDING
    function_name: str
    module_name: str


class GraphReply(TypedDict):
    inputs: list[GraphInput]


# ---- the call channel -------------------------------------------------------------------

# A frame's op, and which request its body is.
CALL = "call"  # body: CallRequest; ok: CallReply
OUTPUTS = "outputs"  # body: OutputsRequest, of the frame's call_id; ok: OutputsReply
PING = "ping"  # body: {}; ok: {} (the channel's own round trip)


class ChannelRequest(TypedDict):
    id: int  # the client's number for it, in its reply
    op: str
    body: Mapping[str, object]
    call_id: NotRequired[str]  # the call of an OUTPUTS request
    retried: NotRequired[bool]  # the request may have reached the server before


class ChannelReply(TypedDict):
    """The answer to a request: `ok` with the reply, or the error the HTTP route would have
    answered (its status, the error's type, and its message)."""

    id: int | None
    ok: NotRequired[object]
    status: NotRequired[int]
    type: NotRequired[str]
    error: NotRequired[str]
