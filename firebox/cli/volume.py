"""`firebox volume ...`: create, list, ls, put, get, rm, cp, rename, delete."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import click

from ..sdk.volume import FileEntryType, Volume
from .common import fixed, print_table, request, when


@contextlib.contextmanager
def _in_volume(name: str, hint: str = "") -> Iterator[None]:
    """The volume's file errors as one line in this command's words (-r, --force) rather than
    the SDK's (recursive=True, force=True), with what to do next."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        message = str(exc).rstrip(".").replace("in the volume", f"in volume '{name}'")
        for sdk, cli in (("recursive=True", "-r"), ("force=True", "--force")):
            message = message.replace(f"pass {sdk}", f"pass {cli}")
        if isinstance(exc, FileNotFoundError):
            hint = hint or f"`firebox volume ls {name}` shows what it holds"
        raise click.ClickException(message + (f"; {hint}." if hint else ".")) from None


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
    print_table(
        ["NAME", fixed("ID"), fixed("FILES", number=True), fixed("BYTES", number=True),
         fixed("CREATED")],
        [(r["name"], r["id"], r["files"], r["bytes"], when(r["created_at"])) for r in rows],
    )


@volume_group.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("-r", "--recursive", is_flag=True, help="List subdirectories' files too.")
def volume_ls(name: str, path: str, recursive: bool) -> None:
    """List the files at PATH in volume NAME."""
    with _in_volume(name):
        entries = Volume.from_name(name).listdir(path, recursive=recursive)
    print_table(
        ["PATH", fixed("SIZE", number=True), fixed("MODIFIED")],
        [(e.path + ("/" if e.type == FileEntryType.DIRECTORY else ""), e.size, when(e.mtime))
         for e in entries],
    )


@volume_group.command("put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.argument("remote_path", default="/")
@click.option("-f", "--force", is_flag=True, help="Overwrite files that exist.")
def volume_put(name: str, local_path: Path, remote_path: str, force: bool) -> None:
    """Upload a file or directory to REMOTE_PATH (a directory when it ends with /)."""
    vol = Volume.from_name(name)
    with _in_volume(name), vol.batch_upload(force=force) as batch:
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
    files = Volume.from_name(name)
    parent = remote_path.rstrip("/").rpartition("/")[0] or "/"
    in_volume = _in_volume(name, f"`firebox volume ls {name} {parent}` lists what is there")
    if local_path == "-":
        with in_volume:
            _write(files.read_file(remote_path), sys.stdout.buffer)
        return
    target = Path(local_path)
    if target.is_dir():
        target = target / Path(remote_path).name
    # Into a file beside the target, renamed once whole: a failed download leaves no empty or
    # half-written file, and an existing one as it was.
    try:
        fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {target}: {exc.strerror}.") from None
    try:
        with open(fd, "wb") as f, in_volume:
            _write(files.read_file(remote_path), f)
        os.chmod(part, 0o666 & ~_umask())
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    click.echo(f"Downloaded {name}:{remote_path} to {target}.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(chunks: Iterable[bytes], out: IO[bytes]) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


@volume_group.command("rm")
@click.argument("name")
@click.argument("remote_path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a directory and all it holds.")
def volume_rm(name: str, remote_path: str, recursive: bool) -> None:
    """Remove a file (or a directory with -r)."""
    with _in_volume(name):
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
    with _in_volume(name):
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
