"""Schedules, as `modal.schedule` names them."""

from .sdk.schedule import Cron, Period, Schedule

__all__ = ["Cron", "Period", "Schedule"]
