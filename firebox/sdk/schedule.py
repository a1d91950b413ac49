"""Schedules: Cron and Period make the control plane call a function on its own."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from ..exception import InvalidError


class Schedule:
    """What @app.function(schedule=...) takes."""

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError


class Cron(Schedule):
    """Run at the times a cron expression names, read in `timezone`: Cron("0 9 * * 1-5")."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        from croniter import croniter

        if not isinstance(cron_string, str) or not croniter.is_valid(cron_string):
            raise InvalidError(
                f"{cron_string!r} is not a valid cron expression; use five fields like "
                "'*/5 * * * *'."
            )
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidError(
                f"Unknown timezone {timezone!r}; use an IANA name like 'Europe/Berlin'."
            ) from None
        self.cron_string = cron_string
        self.timezone = timezone

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"

    def spec(self) -> dict[str, Any]:
        return {"cron": self.cron_string, "timezone": self.timezone}


class Period(Schedule):
    """Run every fixed interval, the first time one interval after the app starts."""

    def __init__(self, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0, weeks: float = 0, milliseconds: float = 0,
                 microseconds: float = 0) -> None:
        delta = datetime.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes,
                                   seconds=seconds, milliseconds=milliseconds,
                                   microseconds=microseconds)
        if delta.total_seconds() < 1:
            raise InvalidError("A Period must be at least one second long.")
        self.seconds = delta.total_seconds()

    def __repr__(self) -> str:
        return f"Period(seconds={self.seconds:g})"

    def spec(self) -> dict[str, Any]:
        return {"period": self.seconds}


def schedule_spec(schedule: Any) -> dict[str, Any] | None:
    if schedule is None:
        return None
    if not isinstance(schedule, Schedule):
        raise InvalidError("schedule= takes firebox.Cron(...) or firebox.Period(...).")
    return schedule.spec()


__all__ = ["Cron", "Period"]
