"""`firebox dict ...` and `firebox queue ...`: list, create, len, get/peek, clear, delete."""

from __future__ import annotations

import json

import click

from ..sdk.dict import Dict
from ..sdk.queue import Queue
from .common import fixed, print_table, request, when


def _listing(kind: str, path: str, as_json: bool) -> None:
    rows = request("GET", path)[kind + "s"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table(["NAME", fixed("ID"), fixed("ITEMS", number=True), fixed("CREATED")],
                [(r["name"], r["id"], r["len"], when(r["created_at"])) for r in rows])


@click.group("dict")
def dict_group() -> None:
    """Dicts: list, create, get, items, len, clear, delete."""


@dict_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def dict_list(as_json: bool) -> None:
    """List the workspace's Dicts."""
    _listing("dict", "/v1/dicts", as_json)


@dict_group.command("create")
@click.argument("name")
def dict_create(name: str) -> None:
    """Create a Dict called NAME."""
    request("POST", "/v1/dicts", packed={"name": name})
    click.echo(f"Created Dict '{name}'.")


@dict_group.command("get")
@click.argument("name")
@click.argument("key")
def dict_get(name: str, key: str) -> None:
    """Print the value of KEY (a string key) in Dict NAME."""
    try:
        value = Dict.from_name(name)[key]
    except KeyError:
        raise click.ClickException(
            f"No key {key!r} in Dict '{name}'; `firebox dict items {name}` shows its keys."
        ) from None
    click.echo(repr(value))


@dict_group.command("items")
@click.argument("name")
@click.option("-n", default=20, show_default=True, help="How many to show.")
def dict_items(name: str, n: int) -> None:
    """Print the first N entries of Dict NAME."""
    for i, (k, v) in enumerate(Dict.from_name(name).items()):
        if i >= n:
            break
        click.echo(f"{k!r}: {v!r}")


@dict_group.command("len")
@click.argument("name")
def dict_len(name: str) -> None:
    """Print how many entries Dict NAME holds."""
    click.echo(Dict.from_name(name).len())


@dict_group.command("clear")
@click.argument("name")
def dict_clear(name: str) -> None:
    """Remove every entry of Dict NAME."""
    Dict.from_name(name).clear()
    click.echo(f"Cleared Dict '{name}'.")


@dict_group.command("delete")
@click.argument("name")
def dict_delete(name: str) -> None:
    """Delete Dict NAME and its entries."""
    request("DELETE", f"/v1/dicts/{name}")
    click.echo(f"Deleted Dict '{name}'.")


@click.group("queue")
def queue_group() -> None:
    """Queues: list, create, peek, len, clear, delete."""


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def queue_list(as_json: bool) -> None:
    """List the workspace's Queues."""
    _listing("queue", "/v1/queues", as_json)


@queue_group.command("create")
@click.argument("name")
def queue_create(name: str) -> None:
    """Create a Queue called NAME."""
    request("POST", "/v1/queues", packed={"name": name})
    click.echo(f"Created Queue '{name}'.")


@queue_group.command("peek")
@click.argument("name")
@click.option("-n", default=1, show_default=True, help="How many items to show.")
@click.option("--partition", default=None, help="This partition (default: the default one).")
def queue_peek(name: str, n: int, partition: str | None) -> None:
    """Print the first N items of Queue NAME without taking them."""
    for i, value in enumerate(Queue.from_name(name).iterate(partition=partition)):
        if i >= n:
            break
        click.echo(repr(value))


@queue_group.command("len")
@click.argument("name")
@click.option("--partition", default=None, help="This partition (default: the default one).")
@click.option("--total", is_flag=True, help="Count every partition.")
def queue_len(name: str, partition: str | None, total: bool) -> None:
    """Print how many items Queue NAME holds."""
    click.echo(Queue.from_name(name).len(partition=partition, total=total))


@queue_group.command("clear")
@click.argument("name")
@click.option("--partition", default=None, help="This partition (default: the default one).")
@click.option("--all", "everything", is_flag=True, help="Clear every partition.")
def queue_clear(name: str, partition: str | None, everything: bool) -> None:
    """Remove the items of Queue NAME (of one partition, or --all)."""
    Queue.from_name(name).clear(partition=partition, all=everything)
    click.echo(f"Cleared Queue '{name}'.")


@queue_group.command("delete")
@click.argument("name")
def queue_delete(name: str) -> None:
    """Delete Queue NAME and its items."""
    request("DELETE", f"/v1/queues/{name}")
    click.echo(f"Deleted Queue '{name}'.")
