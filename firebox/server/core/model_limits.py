"""Limits on the model gateway, for a workspace and for each gateway key: requests and tokens
per minute (sliding windows), requests in flight at once, and a monthly spending budget (UTC
calendar month, at the operator's token prices). A request past any of them is refused before
it reaches an engine, with how long to wait; its tokens count once it is answered."""

from __future__ import annotations

import datetime
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from .errors import invalid

LIMITS = {"requests_per_minute": int, "tokens_per_minute": int, "concurrent_requests": int,
          "monthly_budget_usd": float}
MINUTE = 60.0


def check_limits(limits: Any) -> dict[str, Any]:
    """The limits as stored: known names, positive numbers; None or absent means no limit."""
    if not isinstance(limits, dict):
        raise invalid("Limits are an object of " + ", ".join(LIMITS) + ".")
    out: dict[str, Any] = {}
    for name, value in limits.items():
        kind = LIMITS.get(name)
        if kind is None:
            raise invalid(f"Unknown limit '{name}': use {', '.join(LIMITS)}.")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0) or (kind is int and value != int(value)):
            raise invalid(f"Limit {name} must be a non-negative "
                          f"{'whole number' if kind is int else 'number'}, not {value!r}.")
        out[name] = kind(value)
    return out


class Limited(Exception):
    """A request past a limit: OpenAI's 429, with how many seconds to wait."""

    def __init__(self, message: str, retry_after: float, code: str = "rate_limit_exceeded",
                 kind: str = "requests") -> None:
        super().__init__(message)
        self.message, self.retry_after, self.code, self.kind = message, retry_after, code, kind


def _month_start(now: float) -> float:
    day = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def _next_month(now: float) -> float:
    start = datetime.datetime.fromtimestamp(_month_start(now), datetime.UTC)
    return (start + datetime.timedelta(days=32)).replace(day=1).timestamp()


@dataclass
class Window:
    """What one scope (a workspace, or a key) used lately."""

    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    in_flight: int = 0
    month: float = 0.0  # the start of the month spent is of
    spent: float | None = None  # None until read from the database

    def trim(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - MINUTE:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - MINUTE:
            self.token_sum -= self.tokens.popleft()[1]


@dataclass
class Ticket:
    """An admitted request's hold on its scopes' windows."""

    windows: list[Window]
    released: bool = False


class ModelLimits:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.windows: dict[tuple[str, str | None], Window] = {}  # (workspace, key id)

    async def get(self, workspace_id: str) -> dict[str, Any]:
        limits = self.workspaces.get(workspace_id)
        if limits is None:
            rows = await self.db.read(sa.select(s.model_limits.c.limits)
                                      .where(s.model_limits.c.workspace_id == workspace_id))
            limits = self.workspaces[workspace_id] = json.loads(rows[0][0]) if rows else {}
        return limits

    async def set(self, workspace_id: str, limits: Any) -> dict[str, Any]:
        """Replace the workspace's limits (an empty object lifts them all)."""
        checked = check_limits(limits)

        async def op(conn: Any) -> None:
            await conn.execute(s.model_limits.delete()
                               .where(s.model_limits.c.workspace_id == workspace_id))
            await conn.execute(s.model_limits.insert().values(workspace_id=workspace_id,
                                                              limits=json.dumps(checked)))
        await self.db.write(op)
        self.workspaces[workspace_id] = checked
        return checked

    async def _spent(self, window: Window, workspace_id: str, key_id: str | None,
                     now: float) -> float:
        month = _month_start(now)
        if window.spent is None or window.month != month:
            q = sa.select(sa.func.coalesce(sa.func.sum(s.model_requests.c.cost_usd), 0.0)).where(
                s.model_requests.c.workspace_id == workspace_id,
                s.model_requests.c.created_at >= month)
            if key_id is not None:
                q = q.where(s.model_requests.c.key_id == key_id)
            window.spent, window.month = float((await self.db.read(q))[0][0]), month
        return window.spent

    async def admit(self, workspace_id: str, key_id: str | None,
                    key_limits: dict[str, Any] | None) -> Ticket:
        """Hold a place for one request, or raise Limited."""
        now = time.time()
        scopes = [((workspace_id, None), await self.get(workspace_id), "This workspace")]
        if key_id is not None:
            scopes.append(((workspace_id, key_id), key_limits or {}, "This key"))
        held = []
        for scope, limits, who in scopes:
            window = self.windows.setdefault(scope, Window())
            window.trim(now)
            await self._check(window, limits, who, scope, now)
            held.append(window)
        for window in held:
            window.requests.append(now)
            window.in_flight += 1
        return Ticket(held)

    async def _check(self, window: Window, limits: dict[str, Any], who: str,
                     scope: tuple[str, str | None], now: float) -> None:
        rpm = limits.get("requests_per_minute")
        if rpm is not None and len(window.requests) >= rpm:
            wait = window.requests[len(window.requests) - rpm] + MINUTE - now if rpm else MINUTE
            raise Limited(f"{who} is limited to {rpm} requests per minute; retry in "
                          f"{math.ceil(wait)} s.", wait)
        tpm = limits.get("tokens_per_minute")
        if tpm is not None and window.token_sum >= tpm:
            wait = window.tokens[0][0] + MINUTE - now if window.tokens else MINUTE
            raise Limited(f"{who} is limited to {tpm} tokens per minute and used "
                          f"{window.token_sum}; retry in {math.ceil(wait)} s.", wait,
                          kind="tokens")
        concurrent = limits.get("concurrent_requests")
        if concurrent is not None and window.in_flight >= concurrent:
            raise Limited(f"{who} is limited to {concurrent} requests at once; wait for one "
                          "to finish.", 1.0)
        budget = limits.get("monthly_budget_usd")
        if budget is not None and await self._spent(window, *scope, now) >= budget:
            raise Limited(f"{who} spent its monthly budget of ${budget:g} on model tokens; "
                          "raise monthly_budget_usd or wait for next month.",
                          _next_month(now) - now, code="insufficient_quota", kind="budget")

    def release(self, ticket: Ticket, tokens: int, cost: float) -> None:
        """The request ended: its tokens and cost count against its scopes."""
        if ticket.released:
            return
        ticket.released = True
        now = time.time()
        for window in ticket.windows:
            window.in_flight -= 1
            if tokens:
                window.tokens.append((now, tokens))
                window.token_sum += tokens
            if window.spent is not None:
                window.spent += cost
