"""Schedules: the control plane calls functions that have a Cron or Period schedule on its own.

Each run is an ordinary call (kind "schedule") of the function with no arguments, durable like
any other, and is recorded in the app's history as a `schedule_run` event.

Runs missed while the server was down: when a server starts, each scheduled function of a
deployed app whose next run (counted from its last recorded run, or from when it was first
registered) already passed is run once, right away, however many runs were missed; later runs
follow the schedule from then on. Ephemeral apps (`firebox run`, `app.run()`) are scheduled
from the moment they register, and never make up missed runs.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from ...wire import calls as wire_calls
from .functions import FunctionRecord

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("firebox.schedules")

RUN_EVENT = "schedule_run"
MAX_SLEEP = 1.0  # seconds the loop sleeps at most, so new schedules are seen soon


def next_run(schedule: dict[str, Any], after: float) -> float:
    """The first time strictly after `after` (a Unix time) that the schedule fires."""
    if "period" in schedule:
        return after + float(schedule["period"])
    from croniter import croniter

    tz = zoneinfo.ZoneInfo(schedule.get("timezone") or "UTC")
    start = datetime.datetime.fromtimestamp(after, tz)
    return float(croniter(schedule["cron"], start).get_next(float))


def first_run(schedule: dict[str, Any], last: float, now: float) -> tuple[float, bool]:
    """When to run next after a start, and whether that run makes up for missed ones: at most
    one missed run is made up, right away."""
    due = next_run(schedule, last)
    if due <= now:
        return now, True
    return due, False


@dataclass
class Entry:
    function_id: str
    schedule: dict[str, Any]
    due: float
    missed: bool = False


class Schedules:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.entries: dict[str, Entry] = {}
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        now = time.time()
        rows = await self.cp.db.read(
            sa.select(s.functions.c.id, s.functions.c.created_at,
                      s.functions.c.app_id, s.functions.c.name)
            .join(s.apps, s.apps.c.id == s.functions.c.app_id)
            .where(s.apps.c.state == "deployed", s.functions.c.parent_id.is_(None))
        )
        for r in rows:
            fn = await self.cp.load_function(r.id)  # None for a stored spec that is not valid
            schedule = fn.spec.get("schedule") if fn is not None else None
            if schedule:
                last = await self._last_run(r.app_id, r.name) or r.created_at
                due, missed = first_run(schedule, last, now)
                self.entries[r.id] = Entry(r.id, schedule, due, missed)
        self._task = asyncio.create_task(self._loop(), name="schedules")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _last_run(self, app_id: str, name: str) -> float | None:
        rows = await self.cp.db.read(
            sa.select(s.app_events.c.detail)
            .where(s.app_events.c.app_id == app_id, s.app_events.c.kind == RUN_EVENT)
            .order_by(s.app_events.c.id.desc())
        )
        for r in rows:
            detail = json.loads(r.detail)
            if detail.get("function") == name:
                return float(detail["scheduled_for"])
        return None

    def register(self, fn: FunctionRecord) -> None:
        """A function was registered (run, deploy or redeploy): follow its schedule."""
        schedule = fn.spec.get("schedule")
        known = self.entries.get(fn.id)
        if not schedule:
            self.entries.pop(fn.id, None)
            return
        if known is not None and known.schedule == schedule:
            return
        self.entries[fn.id] = Entry(fn.id, schedule, next_run(schedule, time.time()))
        self.wake.set()

    async def _loop(self) -> None:
        while True:
            now = time.time()
            for entry in [e for e in self.entries.values() if e.due <= now]:
                try:
                    await self._fire(entry, now)
                except Exception:
                    log.exception("scheduled run of %s failed to start", entry.function_id)
                    entry.due = next_run(entry.schedule, now)
            soonest = min((e.due for e in self.entries.values()), default=now + MAX_SLEEP)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, min(MAX_SLEEP, soonest - now)))
            except TimeoutError:
                pass

    async def _fire(self, entry: Entry, now: float) -> None:
        fn = await self.cp.load_function(entry.function_id)
        if fn is None or not self.cp.calls.accepts(fn):
            del self.entries[entry.function_id]
            return
        scheduled_for, missed = entry.due, entry.missed
        entry.due, entry.missed = next_run(entry.schedule, now), False
        call_id = await self.cp.calls.start(fn, wire_calls.SCHEDULE)
        await self.cp.app_event(fn.app_id, RUN_EVENT, {
            "function": fn.name, "call_id": call_id, "scheduled_for": scheduled_for,
            "missed": missed,
        })

