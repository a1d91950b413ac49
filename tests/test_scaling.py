"""The autoscaler: min/max containers, scale to zero, capacity, update_autoscaler, stats."""

import json
import time

import pytest
from apps import scaling

import firebox


def stats(server):
    out = server.cli("app", "stats", scaling.app.app_id, "--json")
    assert out.returncode == 0, out.stderr
    return {f["function"]: f for f in json.loads(out.stdout)["functions"]}


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="module")
def running(server):
    with scaling.app.run():
        yield server


def test_min_containers_start_before_any_call(running):
    wait_for(lambda: stats(running).get("warm", {}).get("containers", {}).get("ready") == 1)
    first = scaling.warm.remote()
    assert scaling.warm.remote() == first  # the warm container serves the calls


def test_max_containers_caps_the_pool(running):
    ids = list(scaling.capped.map([0.3] * 6))
    assert len(set(ids)) <= 2
    assert len(ids) == 6


def test_scales_to_zero_when_idle(running):
    scaling.quick.remote(1)
    def idle():
        quick = stats(running).get("quick")
        return quick is None or sum(quick["containers"].values()) == 0

    wait_for(idle)
    assert scaling.quick.remote(2) == 3  # and back up from zero


def test_inputs_wait_for_capacity_instead_of_failing(running):
    # Each container reserves 1.5 of the 2 cores: they must run one after another.
    ids = list(scaling.whole_machine.map([0.2, 0.2, 0.2]))
    assert len(ids) == 3


def test_request_that_can_never_fit_fails_at_once(server):
    app = firebox.App("test-never-fits")

    @app.function(memory=10**9, serialized=True)
    def huge():
        return 1

    with pytest.raises(firebox.exception.InvalidError, match="can never run here"):
        with app.run():
            pass


def test_update_autoscaler_on_a_running_app(running):
    scaling.lazy.update_autoscaler(min_containers=2)
    wait_for(lambda: stats(running).get("lazy", {}).get("containers", {}).get("ready") == 2)
    events = " ".join(e["text"] for e in stats(running)["lazy"]["events"])
    assert "autoscaler updated" in events and "started" in events
    scaling.lazy.update_autoscaler(min_containers=0, scaledown_window=2)

    def gone():
        lazy = stats(running).get("lazy")
        return lazy is None or sum(lazy["containers"].values()) == 0

    wait_for(gone)


def test_stats_cli_shows_queue_and_events(running):
    call = scaling.capped.spawn(1.0)
    out = running.cli("app", "stats", scaling.app.app_id)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "QUEUED" in line)
    row = next(line for line in out.stdout.splitlines() if line.startswith("capped "))
    queued = row.split()[header.split().index("QUEUED")]
    assert queued.isdigit()
    call.get()
    # How its containers started: a plain function's, cold or from a standby runtime.
    starts = json.loads(running.cli("app", "stats", scaling.app.app_id, "--json").stdout)
    kinds = {r["start"] for r in starts["starts"] if r["function"] == "capped"}
    assert kinds and kinds <= {"cold", "standby"}
    assert "Recent starts" in running.cli("app", "stats", scaling.app.app_id).stdout
