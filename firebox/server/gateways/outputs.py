"""What a foreign format's container yields for one input, read as the gateways need it: JSON
text only (never a pickled object: a container's output is untrusted), and the input's end."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from ... import wire

if TYPE_CHECKING:
    from ..core.plane import ControlPlane

log = logging.getLogger("firebox.gateways")
WEBHOOK_TIMEOUT = 10.0
POLL = 30.0  # seconds one read of a call's outputs waits at most
_sending: set[asyncio.Task[None]] = set()


async def read_until(cp: ControlPlane, workspace_id: str, call_id: str,
                     done: Callable[[list[Any]], bool], wait: float) -> list[Any]:
    """The call's outputs, read as they come until done(outputs) or `wait` seconds passed."""
    deadline = time.monotonic() + wait
    outputs = (await cp.calls.read(workspace_id, call_id, 0, 0))["outputs"]
    while not done(outputs) and (left := deadline - time.monotonic()) > 0:
        after = outputs[-1][0] if outputs else 0
        outputs += (await cp.calls.read(workspace_id, call_id, after, min(left, POLL)))[
            "outputs"]
    return outputs


def events(outputs: list[Any]) -> list[dict[str, Any]]:
    """The JSON objects the input yielded, in order; one that is not JSON says so."""
    found = []
    for _seq, _idx, status, data in outputs:
        if status == wire.ITEM:
            try:
                _number, text = wire.deserialize_plain(data or b"", "input's output")
                event = json.loads(text)
            except (ValueError, TypeError, wire.DeserializationError):
                event = {"error": "The container sent an output that is not JSON text."}
            found.append(event if isinstance(event, dict) else {})
    return found


def end(outputs: list[Any]) -> tuple[str, bytes | None] | None:
    """(status, data) of the input's terminal output, if it has one."""
    for _seq, _idx, status, data in reversed(outputs):
        if status in wire.TERMINAL:
            return status, data
    return None


def failure(status: str, data: bytes | None, otherwise: str) -> str:
    """A failed input's exception as 'Type: message', from its record (never unpickled)."""
    if status == wire.FAILURE and data:
        try:
            record = wire.unpack(data)
            return f"{record.get('type', 'Error')}: {record.get('message', '')}"
        except Exception:  # noqa: BLE001 (a record that will not read still failed)
            pass
    return otherwise


def send_webhook(url: str, final: Callable[[], Awaitable[Any]], what: str) -> None:
    """In a task of its own: await final() (the document once the work has ended), then POST
    it to url as JSON; a failure is logged."""
    async def send() -> None:
        payload = await final()
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as client:
                await client.post(url, json=payload)
        except httpx.HTTPError as exc:
            log.warning("the webhook of %s (%s) failed: %s", what, url, exc)

    task = asyncio.get_running_loop().create_task(send())
    _sending.add(task)
    task.add_done_callback(_sending.discard)
