"""`firebox model-api`: the models the gateway serves at /v1, its keys and its limits."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import fixed, print_table, request, when

LIMIT_OPTIONS = [("rpm", "requests_per_minute", int), ("tpm", "tokens_per_minute", int),
                 ("concurrent", "concurrent_requests", int), ("budget", "monthly_budget_usd",
                                                                 float)]


def limit_options(f: Any) -> Any:
    helps = {"rpm": "Requests per minute.", "tpm": "Tokens (prompt + completion) per minute.",
             "concurrent": "Requests in flight at once.",
             "budget": "US dollars of tokens per calendar month (UTC)."}
    for flag, _key, kind in reversed(LIMIT_OPTIONS):
        f = click.option(f"--{flag}", type=kind, help=helps[flag])(f)
    return f


def _limits(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options[flag] for flag, key, _ in LIMIT_OPTIONS if options.get(flag) is not None}


def _describe(limits: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in limits.items()) or "none"


@click.group("model-api")
def model_api_group() -> None:
    """The OpenAI-compatible model API at /v1: models, keys and limits."""


@model_api_group.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def models(as_json: bool) -> None:
    """The models @model_api functions serve, and their adapters."""
    found = request("GET", "/v1/models")["data"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    print_table(["MODEL", "ADAPTER OF"], [(m["id"], m.get("parent") or "") for m in found])


@model_api_group.group("key")
def key_group() -> None:
    """API keys for the model API alone, scoped to models."""


@key_group.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--model", "models", multiple=True, help="A model it may call (repeat); "
              "default: every model of the environment.")
@limit_options
def create_key(name: str, models: tuple[str, ...], **options: Any) -> None:
    """Make a key; its secret is shown once."""
    made = request("POST", "/v1/model-api/keys", body={
        "name": name, "models": list(models) or None, "limits": _limits(options)})
    click.echo(made["key"])
    click.echo(f"key {made['key_id']} ({name}): models "
               f"{', '.join(made['models']) if made['models'] else 'all'}; limits "
               f"{_describe(made['limits'])}", err=True)


@key_group.command("list")
def list_keys() -> None:
    """The environment's model API keys, with their models and limits (never their secrets)."""
    keys = request("GET", "/v1/model-api/keys")["keys"]
    print_table([fixed("KEY"), "NAME", "MODELS", "LIMITS", fixed("CREATED")],
                [(k["key_id"], k["name"], ", ".join(k["models"]) if k["models"] else "all",
                  _describe(k["limits"]), when(k["created_at"])) for k in keys])


@key_group.command("delete")
@click.argument("key_id")
def delete_key(key_id: str) -> None:
    """Delete a key: it stops working at once."""
    request("DELETE", f"/v1/model-api/keys/{key_id}")
    click.echo(f"Deleted key {key_id}.")


@model_api_group.command("limits")
@limit_options
@click.option("--clear", is_flag=True, help="Lift every limit.")
def limits(clear: bool, **options: Any) -> None:
    """Show the workspace's limits, or (an operator) set them."""
    given = _limits(options)
    if given or clear:
        current = {} if clear else request("GET", "/v1/model-api/limits")["limits"]
        shown = request("PUT", "/v1/model-api/limits", body={"limits": {**current, **given}})
    else:
        shown = request("GET", "/v1/model-api/limits")
    click.echo(f"limits: {_describe(shown['limits'])}")
