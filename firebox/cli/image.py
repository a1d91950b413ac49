"""`firebox image ...`: list the built images and prune the layer cache."""

from __future__ import annotations

import json

import click

from .common import request, when


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
    for im in images:
        size = sum(layer["size_bytes"] for layer in im["layers"])
        mark = "in use" if im["in_use"] else "unused"
        click.echo(f"{im['image_id']}  {len(im['layers'])} layers  {size / 1e6:.1f} MB  "
                   f"{mark}  last used {when(im['used_at'])}")
        for layer in im["layers"]:
            click.echo(f"    {layer['id'][:12]}  {layer['size_bytes'] / 1e6:8.1f} MB  "
                       f"{layer['label'][:70]}")


@image_group.command("prune")
def image_prune() -> None:
    """Remove the images no running or deployed app uses, and the layers only they had."""
    resp = request("POST", "/v1/images/prune")
    click.echo(f"Removed {len(resp['images'])} images and {resp['layers']} layers "
               f"({resp['freed_bytes'] / 1e6:.1f} MB).")
