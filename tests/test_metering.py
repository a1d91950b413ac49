"""Metering: container-seconds and input seconds from the system's own events, priced."""

import json
import time

from apps import scaling

import firebox


def usage(server, *args):
    out = server.cli("usage", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_usage_counts_container_and_input_seconds(server):
    with scaling.app.run():
        scaling.capped.remote(0.5)
        app_id = scaling.app.app_id
    report = usage(server, "--app", app_id)
    row = next(r for r in report["rows"] if r["key"].endswith("/capped"))
    assert row["containers"] >= 1
    assert row["container_seconds"] >= 0.5
    assert 0.5 <= row["input_seconds"] < row["container_seconds"]
    assert row["cpu_core_seconds"] > 0 and row["memory_gib_seconds"] > 0
    expected = (row["cpu_core_seconds"] * report["prices"]["cpu_core_second"]
                + row["memory_gib_seconds"] * report["prices"]["memory_gib_second"])
    assert abs(row["cost_usd"] - expected) < 1e-12
    by_day = usage(server, "--app", app_id, "--by", "day")
    assert abs(by_day["total"]["container_seconds"] - report["total"]["container_seconds"]) < 1e-6
    table = server.cli("usage", "--app", app_id)
    assert "capped" in table.stdout and "total" in table.stdout


def test_idle_app_scaled_to_zero_accrues_nothing(server):
    app = firebox.App("test-idle-metering")

    @app.function(scaledown_window=2, serialized=True)
    def once():
        return 1

    with app.run():
        once.remote()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the pool has scaled to zero
            stats = json.loads(server.cli("app", "stats", app.app_id, "--json").stdout)
            if not any(sum(f["containers"].values()) for f in stats["functions"]):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the pool did not scale to zero")
        first = usage(server, "--app", app.app_id)["total"]
        time.sleep(2.5)
        second = usage(server, "--app", app.app_id)["total"]
    assert first["container_seconds"] > 0
    assert second["container_seconds"] == first["container_seconds"]
    assert second["cost_usd"] == first["cost_usd"]


def test_price_table_can_be_set_by_the_operator(own_server):
    own_server.stop()
    (own_server.state_dir / "prices.toml").write_text(
        "cpu_core_second = 1.0\nmemory_gib_second = 0.0\n[gpu]\nH100 = 2.0\n"
    )
    own_server.start()
    report = json.loads(own_server.cli("usage", "--json").stdout)
    assert report["prices"]["cpu_core_second"] == 1.0
    assert report["prices"]["gpu:H100"] == 2.0
