"""`firebox secret ...`: create, list, delete. Values go in; they are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..exception import InvalidError
from ..sdk.secret import parse_dotenv
from .common import fixed, print_table, request, when


@click.group("secret")
def secret_group() -> None:
    """Secrets: create, list, delete."""


def _from_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidError(f"{path} is not valid JSON ({exc}); give an object of "
                           '{"KEY": "value"} pairs.') from None
    if not isinstance(data, dict):
        raise InvalidError(f'{path} must hold a JSON object of {{"KEY": "value"}} pairs.')
    wrong = [k for k, v in data.items() if not isinstance(v, str)]
    if wrong:
        raise InvalidError(f"{path}: the values of {', '.join(wrong)} are not strings; a "
                           "secret's values are text, so quote them.")
    return data


@secret_group.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--from-dotenv", "dotenv", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              help="Take KEY=VALUE lines from this .env file.")
@click.option("--from-json", "json_file", type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path),
              help='Take the pairs of this JSON object ({"KEY": "value"}).')
@click.option("--force", is_flag=True, help="Replace a secret of that name.")
def secret_create(name: str, pairs: tuple[str, ...], dotenv: Path | None,
                  json_file: Path | None, force: bool) -> None:
    """Store secret NAME with KEY=VALUE pairs (use KEY=- to read the value from stdin).

    The pairs may come from --from-dotenv or --from-json files too; pairs given on the
    command line win over theirs.
    """
    if not (pairs or dotenv or json_file):
        raise click.UsageError("Give KEY=VALUE pairs, --from-dotenv FILE or --from-json FILE.")
    env: dict[str, str] = {}
    if dotenv is not None:
        env.update(parse_dotenv(dotenv.read_text()))
    if json_file is not None:
        env.update(_from_json(json_file))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidError(f"'{pair.split('=')[0]}' is not KEY=VALUE.")
        env[key] = click.get_text_stream("stdin").read().rstrip("\n") if value == "-" else value
    if not env:
        raise InvalidError("The files hold no KEY=VALUE pairs; a secret needs at least one.")
    resp = request("POST", "/v1/secrets", body={"name": name, "env": env, "overwrite": force})
    click.echo(f"Created secret '{name}' with keys: {', '.join(resp['keys'])}.")


@secret_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def secret_list(as_json: bool) -> None:
    """List the workspace's secrets and their key names."""
    rows = request("GET", "/v1/secrets")["secrets"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table(["NAME", fixed("UPDATED"), "KEYS"],
                [(r["name"], when(r["updated_at"]), ", ".join(r["keys"])) for r in rows])


@secret_group.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Delete secret NAME; functions that use it no longer get its variables."""
    request("DELETE", f"/v1/secrets/{name}")
    click.echo(f"Deleted secret '{name}'.")
