"""`firebox app stats` and `firebox usage`: what the autoscaler did and what it cost."""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

import click

from .common import request


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
    if not stats["functions"]:
        click.echo("  no containers and no queued inputs: scaled to zero")
    for f in stats["functions"]:
        c = f["containers"]
        a = f["autoscaler"]
        click.echo(
            f"  {f['function']}: containers ready={c['ready']} starting={c['starting']} "
            f"stopping={c['stopping']}; queued={f['queued']} running={f['running']}; "
            f"min={a['min_containers']} max={a['max_containers'] or '-'} "
            f"buffer={a['buffer_containers']} scaledown={a['scaledown_window']:g}s"
        )
        for e in f["events"][-10:]:
            ts = datetime.datetime.fromtimestamp(e["ts"]).strftime("%H:%M:%S")
            click.echo(f"    {ts}  {e['text']}")


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
@click.option("--by", type=click.Choice(["function", "day"]), default="function",
              show_default=True, help="Sum the rows per function or per day.")
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
    header = f"{by.upper():<40} {'CONTAINERS':>10} {'CONTAINER-S':>12} {'CPU-CORE-S':>11} "
    header += f"{'MEM-GIB-S':>10} {'GPU-S':>8} {'INPUTS':>7} {'INPUT-S':>9} {'COST USD':>10}"
    click.echo(header)
    for row in [*report["rows"], {"key": "total", **report["total"]}]:
        gpu = sum(v for k, v in row.items() if k.startswith("gpu_seconds:"))
        click.echo(
            f"{row['key']:<40} {row.get('containers', 0):>10.0f} "
            f"{row.get('container_seconds', 0):>12.1f} {row.get('cpu_core_seconds', 0):>11.1f} "
            f"{row.get('memory_gib_seconds', 0):>10.1f} {gpu:>8.1f} {row.get('inputs', 0):>7.0f} "
            f"{row.get('input_seconds', 0):>9.2f} {row.get('cost_usd', 0):>10.6f}"
        )
