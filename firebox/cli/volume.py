"""`firebox volume ...`: create, list, ls, put, get, rm, cp, rename, delete."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..sdk.volume import FileEntryType, Volume
from .common import request, when


@click.group("volume")
def volume_group() -> None:
    """Volumes: create, list, ls, put, get, rm, cp, rename, delete."""


@volume_group.command("create")
@click.argument("name")
def volume_create(name: str) -> None:
    """Create a volume called NAME."""
    request("POST", "/v1/volumes", packed={"name": name})
    click.echo(f"Created volume '{name}'.")


@volume_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def volume_list(as_json: bool) -> None:
    """List the workspace's volumes."""
    rows = request("GET", "/v1/volumes")["volumes"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<32} {'ID':<22} {'FILES':>7} {'BYTES':>12}  CREATED")
    for r in rows:
        click.echo(f"{r['name']:<32} {r['id']:<22} {r['files']:>7} {r['bytes']:>12}  "
                   f"{when(r['created_at'])}")


@volume_group.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("-r", "--recursive", is_flag=True, help="List subdirectories' files too.")
def volume_ls(name: str, path: str, recursive: bool) -> None:
    """List the files at PATH in volume NAME."""
    for e in Volume.from_name(name).listdir(path, recursive=recursive):
        suffix = "/" if e.type == FileEntryType.DIRECTORY else ""
        click.echo(f"{e.size:>12}  {when(e.mtime)}  {e.path}{suffix}")


@volume_group.command("put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.argument("remote_path", default="/")
@click.option("-f", "--force", is_flag=True, help="Overwrite files that exist.")
def volume_put(name: str, local_path: Path, remote_path: str, force: bool) -> None:
    """Upload a file or directory to REMOTE_PATH (a directory when it ends with /)."""
    vol = Volume.from_name(name)
    with vol.batch_upload(force=force) as batch:
        if local_path.is_dir():
            batch.put_directory(local_path, remote_path)
        else:
            if remote_path.endswith("/"):
                remote_path += local_path.name
            batch.put_file(local_path, remote_path)
    click.echo(f"Uploaded {local_path} to {name}:{remote_path}.")


@volume_group.command("get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", default="-")
def volume_get(name: str, remote_path: str, local_path: str) -> None:
    """Download a file (to LOCAL_PATH, or to stdout with -)."""
    vol = Volume.from_name(name)
    if local_path == "-":
        for chunk in vol.read_file(remote_path):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    target = Path(local_path)
    if target.is_dir():
        target = target / Path(remote_path).name
    with open(target, "wb") as f:
        vol.read_file_into_fileobj(remote_path, f)
    click.echo(f"Downloaded {name}:{remote_path} to {target}.")


@volume_group.command("rm")
@click.argument("name")
@click.argument("remote_path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a directory and all it holds.")
def volume_rm(name: str, remote_path: str, recursive: bool) -> None:
    """Remove a file (or a directory with -r)."""
    Volume.from_name(name).remove_file(remote_path, recursive=recursive)
    click.echo(f"Removed {name}:{remote_path}.")


@volume_group.command("cp")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories and all they hold.")
def volume_cp(name: str, paths: tuple[str, ...], recursive: bool) -> None:
    """Copy SRC... to DST within volume NAME."""
    if len(paths) < 2:
        raise click.UsageError("Give at least one source and a destination.")
    Volume.from_name(name).copy_files(list(paths[:-1]), paths[-1], recursive=recursive)
    click.echo(f"Copied to {name}:{paths[-1]}.")


@volume_group.command("rename")
@click.argument("old_name")
@click.argument("new_name")
def volume_rename(old_name: str, new_name: str) -> None:
    """Rename volume OLD_NAME to NEW_NAME; functions that mount it by name must use the new one."""
    Volume.rename(old_name, new_name)
    click.echo(f"Renamed volume '{old_name}' to '{new_name}'.")


@volume_group.command("delete")
@click.argument("name")
def volume_delete(name: str) -> None:
    """Delete volume NAME and its files."""
    request("DELETE", f"/v1/volumes/{name}")
    click.echo(f"Deleted volume '{name}'.")
