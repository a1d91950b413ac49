"""FunctionCall, a handle on a call by its id, and how a call's outputs are read and become
values (or the exceptions the function raised)."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import client as client_mod
from .. import wire
from .._sync import live_classmethod, live_method
from ..exception import RemoteError
from ..wire import calls as wire_calls
from .call_graph import InputInfo, reconstruct


def result_of(status: str, data: bytes | None) -> Any:
    """The value of a terminal output, or raise what the function raised."""
    if status == wire.SUCCESS:
        return wire.deserialize(data or b"", "result") if data is not None else None
    if status == wire.CANCELLED:
        raise RemoteError("The function call was cancelled before this input finished.")
    raise wire.decode_exception(data or b"")


def value_or_exception(status: str, data: bytes | None) -> Any:
    """The value of an output, or the exception it carries as a value (return_exceptions)."""
    try:
        return result_of(status, data)
    except Exception as exc:
        return exc


async def poll_outputs(call_id: str, after: int = 0, wait: float = client_mod.LONG_POLL
                       ) -> list[wire_calls.Output]:
    request: wire_calls.OutputsRequest = {"after": after, "wait": wait}
    resp = await client_mod.current().call(
        wire_calls.OUTPUTS, f"/v1/calls/{call_id}/outputs", request, call_id
    )
    return resp["outputs"]


class FunctionCall:
    """A handle on a spawned call: poll it, wait for it, cancel it."""

    def __init__(self, call_id: str) -> None:
        self.object_id = call_id

    def __repr__(self) -> str:
        return f"<firebox.FunctionCall {self.object_id}>"

    @live_method
    async def get(self, timeout: float | None = None) -> Any:
        """The result; raises TimeoutError if it is not there within timeout seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        after = 0
        while True:
            wait = client_mod.LONG_POLL
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            for seq, _idx, status, data in await poll_outputs(self.object_id, after, wait):
                after = seq
                if status in wire.TERMINAL:
                    return result_of(status, data)
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"Function call {self.object_id} did not finish in {timeout} s.")

    @live_method
    async def cancel(self, terminate_containers: bool = False) -> None:
        await client_mod.current().request("POST", f"/v1/calls/{self.object_id}/cancel")

    @live_method
    async def get_call_graph(self) -> list[InputInfo]:
        """The call's inputs, each with the inputs of the calls its code made, and so on down."""
        reply = await client_mod.current().request("GET", f"/v1/calls/{self.object_id}/graph")
        return reconstruct(reply)

    @classmethod
    def from_id(cls, function_call_id: str) -> FunctionCall:
        return cls(function_call_id)

    @live_classmethod
    async def gather(cls, *calls: FunctionCall) -> list[Any]:
        """Wait for all calls; results in argument order, the first failure raised."""
        return list(await asyncio.gather(*(c.get.aio() for c in calls)))


async def cancel_quietly(call_id: str) -> None:
    """Cancel a call given up on; failing to is not the caller's error."""
    try:
        await client_mod.current().request("POST", f"/v1/calls/{call_id}/cancel")
    except Exception:
        pass


__all__ = ["FunctionCall"]
