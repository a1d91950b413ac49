"""What a model gateway request used: prompt, completion and cached tokens read from the
engine's answer (a JSON body, or the server-sent events of a stream, passed on one whole event
at a time), time to first token, cost at the operator's prices; one row of model_requests per
request (core/model_usage.py writes them)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..core.model_limits import Ticket
from ..core.model_routes import Target
from ..core.workspaces import Identity

if TYPE_CHECKING:
    from ..core.plane import ControlPlane

OUTPUT = re.compile(rb'"(?:content|text)":\s*"[^"]')  # a chunk's non-empty text


async def relay_stream(chunks: AsyncIterator[bytes], record: Usage,
                        strip_usage: bool) -> AsyncIterator[bytes]:
    """Pass the engine's server-sent events on, one whole event at a time, reading the usage
    and the first token's time from them; the final usage chunk stays behind where the client
    did not ask for it. The request is metered once its stream ends ([DONE]) or breaks."""
    pending = b""
    status = 200
    try:
        async for chunk in chunks:
            pending += chunk
            if b"\n\n" not in pending:
                continue
            complete, _, pending = pending.rpartition(b"\n\n")
            out = [event for event in complete.split(b"\n\n")
                   if record.read_event(event, strip_usage)]
            if out and out[-1].strip() == b"data: [DONE]":
                record.finish(status)  # metered before the client hears the end of it
            if out:
                yield b"\n\n".join(out) + b"\n\n"
        if pending:
            yield pending
    except BaseException:
        status = 499
        raise
    finally:
        record.finish(status)


class Usage:
    """One gateway request's metering: its tokens, time to first token, cost; written once."""

    def __init__(self, cp: ControlPlane, who: Identity, target: Target, model: str,
                 endpoint: str, ticket: Ticket) -> None:
        self.cp, self.who, self.target, self.model = cp, who, target, model
        self.endpoint, self.ticket = endpoint, ticket
        self.started = time.monotonic()
        self.created_at = time.time()
        self.call_id = ""
        self.container_id: str | None = None
        self.prompt_chars = 0
        self.prompt = self.completion = self.cached = 0
        self.counted_chunks = 0
        self.output_chars = 0
        self.has_usage = False
        self.ttft: float | None = None
        self.stream = False
        self.done = False

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.has_usage = True
        self.prompt = int(usage.get("prompt_tokens") or 0)
        self.completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            self.cached = int(details.get("cached_tokens") or 0)

    def read_answer(self, data: bytes) -> None:
        """A whole JSON answer: its usage, or its output's length to count from."""
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        self._usage(doc.get("usage"))
        for choice in doc.get("choices") or []:
            if isinstance(choice, dict):
                message = choice.get("message") or {}
                text = choice.get("text") or (message.get("content") if isinstance(
                    message, dict) else "") or ""
                self.output_chars += len(text) if isinstance(text, str) else 0

    def read_event(self, event: bytes, strip_usage: bool) -> bool:
        """Note what one server-sent event says; False for the one to hold back."""
        line = event.strip()
        if not line.startswith(b"data:"):
            return True
        data = line[5:].strip()
        if data == b"[DONE]":
            return True
        if self.ttft is not None and not _has_usage(data):
            # Past the first token, a chunk without usage is only counted, not parsed.
            if _has_output(data):
                self.counted_chunks += 1
            return True
        try:
            doc = json.loads(data)
        except ValueError:
            return True
        if not isinstance(doc, dict):
            return True
        if doc.get("usage"):
            self._usage(doc["usage"])
            if strip_usage and not doc.get("choices"):
                return False
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            text = choice.get("text") or delta.get("content") or delta.get("tool_calls")
            if text:
                if self.ttft is None:
                    self.ttft = time.monotonic() - self.started
                self.counted_chunks += 1
        return True

    def finish(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        counted = not self.has_usage and status == 200
        if counted:  # no usage from the engine: about four characters a token
            self.prompt = math.ceil(self.prompt_chars / 4)
            self.completion = self.counted_chunks or math.ceil(self.output_chars / 4)
        prices = self.cp.prices
        base = self.target.base
        cost = (self.prompt * prices.get(f"model_input:{base}", 0.0)
                + self.completion * prices.get(f"model_output:{base}", 0.0)) / 1e6
        self.cp.model_limits.release(self.ticket, self.prompt + self.completion, cost)
        duration = (time.monotonic() - self.started) * 1000
        key = self.who.key
        row = {"id": self.call_id or f"rejected-{time.time_ns()}",
               "workspace_id": self.who.workspace_id, "app_id": self.target.function.app_id,
               "function_id": self.target.function.id, "model": self.model[:260],
               "base": base, "adapter": self.target.adapter, "key_id": key.id if key else None,
               "container_id": self.container_id, "endpoint": self.endpoint,
               "status": status, "stream": self.stream, "prompt_tokens": self.prompt,
               "completion_tokens": self.completion, "cached_tokens": self.cached,
               "usage_counted": counted, "cost_usd": cost,
               "ttft_ms": self.ttft * 1000 if self.ttft is not None else None,
               "duration_ms": duration, "created_at": self.created_at}
        self.cp.model_requests.record(row)


def _has_usage(data: bytes) -> bool:
    return b'"usage"' in data and b'"usage":null' not in data and b'"usage": null' not in data


def _has_output(data: bytes) -> bool:
    """Whether a chunk carries output (non-empty text or content, or a tool call), as far as
    its bytes show without parsing."""
    return OUTPUT.search(data) is not None or b'"tool_calls"' in data
