"""Cron and Period schedules: when they fire, that they fire in app.run() and deployed apps,
and the policy for runs missed while the server was down."""

from __future__ import annotations

import datetime
import time
import zoneinfo

import httpx
import pytest
from helpers import eventually

import firebox
from firebox.exception import InvalidError
from firebox.server.core.schedules import first_run, next_run


def _history(srv, app: str) -> list[dict]:
    reply = httpx.get(f"{srv.url}/v1/apps/{app}/history",
                      headers={"Authorization": f"Bearer {srv.token}"}, timeout=30)
    return [e for e in reply.json()["events"] if e["kind"] == "schedule_run"]


def test_cron_follows_its_timezone():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # Friday 2026-03-27 10:00 in Berlin: the next weekday 09:00 is Monday the 30th, after the
    # switch to summer time (UTC+2).
    after = datetime.datetime(2026, 3, 27, 10, 0, tzinfo=berlin).timestamp()
    spec = firebox.Cron("0 9 * * 1-5", timezone="Europe/Berlin").spec()
    due = datetime.datetime.fromtimestamp(next_run(spec, after), datetime.UTC)
    assert due == datetime.datetime(2026, 3, 30, 7, 0, tzinfo=datetime.UTC)
    utc = firebox.Cron("*/15 * * * *").spec()
    assert next_run(utc, 0.0) == 900.0


def test_period_and_missed_runs_policy():
    spec = firebox.Period(minutes=1, seconds=30).spec()
    assert next_run(spec, 100.0) == 190.0
    assert first_run(spec, last=100.0, now=150.0) == (190.0, False)
    # Many runs missed while down: one runs now, not one per missed period.
    assert first_run(spec, last=100.0, now=10_000.0) == (10_000.0, True)


def test_bad_schedules_are_refused():
    with pytest.raises(InvalidError, match="cron"):
        firebox.Cron("every day")
    with pytest.raises(InvalidError, match="timezone"):
        firebox.Cron("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(InvalidError, match="second"):
        firebox.Period(seconds=0.5)
    with pytest.raises(InvalidError, match="Cron"):
        firebox.App("x").function(schedule="daily")


def test_period_fires_during_app_run_and_is_recorded(server):
    from apps import scheduled

    with scheduled.app.run(show_logs=False):
        app_id = scheduled.app.app_id
        events = eventually(lambda: len(_history(server, app_id)) >= 2 and _history(server, app_id),
                            timeout=60)
        assert events, "the Period schedule did not fire twice"
        assert {e["detail"]["function"] for e in events} == {"tick"}
        calls = [e["detail"]["call_id"] for e in events[:2]]
        ran = eventually(lambda: all(scheduled.runs.get(c) == "tick" for c in calls), timeout=60)
        assert ran, "the scheduled calls did not run"
    stopped = len(_history(server, app_id))
    time.sleep(2.5)  # a stopped app's schedule must not fire again
    assert len(_history(server, app_id)) == stopped


def test_missed_runs_made_up_once_after_restart(own_server):
    deployed = own_server.cli("deploy", "tests/apps/scheduled_deployed.py", timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    app = "test-scheduled-deployed"
    assert eventually(lambda: _history(own_server, app), timeout=30)
    own_server.kill()
    time.sleep(4)  # at least one 2-second period passes while the server is down
    own_server.start()

    def made_up_then_on_schedule():
        events = _history(own_server, app)
        flags = [e["detail"]["missed"] for e in events]
        return True in flags and flags[-1] is False and events

    events = eventually(made_up_then_on_schedule, timeout=30)
    assert events, "no missed run was made up after the restart"
    assert [e["detail"]["missed"] for e in events].count(True) == 1
