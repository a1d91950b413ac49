"""`firebox image ...`: list the built images and prune the layer cache."""

from __future__ import annotations

import json

import click

from .common import fixed, print_table, request, when


@click.group("image")
def image_group() -> None:
    """Images: list, prune."""


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def image_list(as_json: bool) -> None:
    """List this workspace's images and their layers."""
    images = request("GET", "/v1/images")["images"]
    if as_json:
        click.echo(json.dumps(images, indent=2))
        return
    if not images:
        click.echo("No images.")
        return
    print_table(
        [fixed("IMAGE ID"), fixed("SIZE", number=True), fixed("USE"), fixed("LAST USED"),
         "LAYERS"],
        [(im["image_id"], _mb(sum(layer["size_bytes"] for layer in im["layers"])),
          "in use" if im["in_use"] else "unused", when(im["used_at"]),
          "\n".join(f"{layer['label']} ({_mb(layer['size_bytes'])})" for layer in im["layers"]))
         for im in images],
    )


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB"


@image_group.command("prune")
def image_prune() -> None:
    """Remove the images no running or deployed app uses, and the layers only they had."""
    resp = request("POST", "/v1/images/prune")
    click.echo(f"Removed {len(resp['images'])} images and {resp['layers']} layers "
               f"({resp['freed_bytes'] / 1e6:.1f} MB).")
