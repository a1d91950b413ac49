"""`firebox app stats` and `firebox usage`: what the autoscaler did and what it cost."""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

import click

from .common import fixed, print_table, request


@click.command("stats")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def app_stats(app: str, as_json: bool) -> None:
    """Show APP's functions: containers, queue depth, inputs in flight, recent scale events."""
    stats = request("GET", f"/v1/apps/{app}/stats")
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    m = stats["machine"]
    click.echo(
        f"{stats['name'] or stats['app_id']} ({stats['state']}); machine: "
        f"{m['cpu_reserved']:g}/{m['cpu']:g} cores, "
        f"{m['memory_reserved_mb']}/{m['memory_mb']} MiB reserved"
    )
    if stats["functions"]:
        _functions(stats["functions"])
    else:
        click.echo("  no containers and no queued inputs: scaled to zero")
    if stats.get("models"):
        _models(stats["models"])
    if stats.get("starts"):
        click.echo("Recent starts (from asked for to ready):")
        print_table(
            ["FUNCTION", "START", fixed("COUNT", number=True), fixed("MEDIAN", number=True),
             fixed("SLOWEST", number=True)],
            [(r["function"], r["start"], r["count"], f"{r['median_s']:.2f}s",
              f"{r['max_s']:.2f}s") for r in stats["starts"]],
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _models(models: list[dict[str, Any]]) -> None:
    click.echo("Models (the last hour, through /v1):")
    print_table(
        ["MODEL", fixed("REQUESTS", number=True), fixed("ERRORS", number=True),
         fixed("TTFT P50", number=True), fixed("TTFT P95", number=True),
         fixed("TOKENS/S", number=True)],
        [(m["model"], m["requests"], m["errors"], _ms(m["ttft_p50_ms"]), _ms(m["ttft_p95_ms"]),
          "-" if m["tokens_per_second_p50"] is None else f"{m['tokens_per_second_p50']:.1f}")
         for m in models],
    )


def _functions(functions: list[dict[str, Any]]) -> None:
    print_table(
        ["FUNCTION", fixed("READY", number=True), fixed("STARTING", number=True),
         fixed("STOPPING", number=True), fixed("QUEUED", number=True),
         fixed("RUNNING", number=True), "AUTOSCALER"],
        [(f["function"], f["containers"]["ready"], f["containers"]["starting"],
          f["containers"]["stopping"], f["queued"], f["running"], _autoscaler(f["autoscaler"]))
         for f in functions],
    )
    events = [(f["function"], e) for f in functions for e in f["events"][-10:]]
    if events:
        click.echo("Recent scale events:")
        print_table(
            [fixed("TIME"), "FUNCTION", "EVENT"],
            [(datetime.datetime.fromtimestamp(e["ts"]).strftime("%H:%M:%S"), name, e["text"])
             for name, e in events],
        )


def _autoscaler(a: dict[str, Any]) -> str:
    return (f"min {a['min_containers']}, max {a['max_containers'] or '-'}, buffer "
            f"{a['buffer_containers']}, scaledown {a['scaledown_window']:g}s")


def parse_since(text: str) -> float:
    """'2h', '30m', '7d', '90s', or an ISO date/time."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter("use a duration like 2h, 30m, 7d or an ISO date") from None


@click.command("usage")
@click.option("--app", help="Only this app (name or id).")
@click.option("--since", help="Only time after this: 2h, 7d, or an ISO date.")
@click.option("--by", type=click.Choice(["function", "day", "model"]), default="function",
              show_default=True, help="Sum the rows per function, per day, or per model "
              "(tokens through /v1 beside the container-seconds serving them).")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def usage(app: str | None, since: str | None, by: str, as_json: bool) -> None:
    """Container-seconds, resources and what they would cost at the price table's rates."""
    params: dict[str, Any] = {"by": by}
    if app:
        params["app"] = app
    if since:
        params["since"] = parse_since(since)
    report = request("GET", "/v1/usage", params=params)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    rows = [*report["rows"], {"key": "total", **report["total"]}]
    if by == "model":
        _model_usage(rows)
        return
    for row in rows:
        row["gpu_seconds"] = sum(v for k, v in row.items() if k.startswith("gpu_seconds:"))
    # (header, key, format); the GPU column only where some row used a GPU, so the table fits
    # 80 columns.
    shown = [("CONTAINERS", "containers", ".0f"),
             ("CONTAINER\nSECONDS", "container_seconds", ".1f"),
             ("CPU CORE\nSECONDS", "cpu_core_seconds", ".1f"),
             ("MEM GIB\nSECONDS", "memory_gib_seconds", ".1f"),
             *([("GPU\nSECONDS", "gpu_seconds", ".1f")] if any(r["gpu_seconds"] for r in rows)
               else []),
             ("INPUTS", "inputs", ".0f"), ("INPUT\nSECONDS", "input_seconds", ".2f"),
             ("COST\nUSD", "cost_usd", ".6f")]
    print_table([by.upper(), *(fixed(header, number=True) for header, _, _ in shown)],
                [(row["key"], *(format(row.get(key, 0), spec) for _, key, spec in shown))
                 for row in rows])


def _model_usage(rows: list[dict[str, Any]]) -> None:
    shown = [("REQUESTS", "requests", ".0f"), ("PROMPT\nTOKENS", "prompt_tokens", ".0f"),
             ("COMPLETION\nTOKENS", "completion_tokens", ".0f"),
             ("CACHED\nTOKENS", "cached_tokens", ".0f"),
             ("TOKEN\nCOST USD", "token_cost_usd", ".6f"),
             ("CONTAINER\nSECONDS", "container_seconds", ".1f"),
             ("COMPUTE\nCOST USD", "compute_cost_usd", ".6f")]
    print_table(["MODEL", *(fixed(header, number=True) for header, _, _ in shown)],
                [(row["key"], *(format(row.get(key, 0), spec) for _, key, spec in shown))
                 for row in rows])
