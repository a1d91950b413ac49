"""`firebox sandbox ...`: list, exec, terminate."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any

import click

from .. import _sync
from ..sdk.sandbox import Sandbox


@click.group("sandbox")
def sandbox_group() -> None:
    """Sandboxes: list, exec, terminate."""


@sandbox_group.command("list")
@click.option("--app-id", default=None, help="Only the sandboxes of this app.")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def sandbox_list(app_id: str | None, as_json: bool) -> None:
    """List the running sandboxes."""
    rows = [{"id": sb.object_id, "isolation": sb.isolation} for sb in Sandbox.list(app_id=app_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<22} ISOLATION")
    for r in rows:
        click.echo(f"{r['id']:<22} {r['isolation']}")


@sandbox_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-t", "--pty", "use_pty", is_flag=True,
              help="Run COMMAND on a terminal and connect yours to it (for shells and other "
                   "interactive programs).")
@click.argument("sandbox_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def sandbox_exec(sandbox_id: str, command: tuple[str, ...], use_pty: bool) -> None:
    """Run COMMAND in sandbox SANDBOX_ID: its output streams here as it comes, this command's
    stdin goes to it, and its exit code is returned."""
    if use_pty and not sys.stdin.isatty():
        raise click.UsageError("--pty needs a terminal on stdin; leave it out to pipe input.")
    code = _sync.run(_exec(sandbox_id, command, use_pty))
    sys.exit(128 - code if code < 0 else code & 0xFF)  # killed by a signal: 128 + its number


async def _exec(sandbox_id: str, command: tuple[str, ...], use_pty: bool) -> int:
    """On firebox's loop: start the command, pump stdin to it and its output here."""
    size = None
    if use_pty:
        columns, rows = os.get_terminal_size(sys.stdout.fileno())
        size = [rows, columns] if rows and columns else None  # else the sandbox's 24x80
    sb = await Sandbox.from_id.aio(sandbox_id)
    process = await sb.exec.aio(*command, text=False, pty=use_pty, _pty_size=size)
    loop = asyncio.get_running_loop()
    typed: asyncio.Queue[bytes] = asyncio.Queue()  # b"" for the end of input

    def readable() -> None:
        data = os.read(0, 65536)
        if not data:
            loop.remove_reader(0)
        typed.put_nowait(data)

    def read_all() -> None:
        while data := os.read(0, 65536):  # not sys.stdin: its lock would hang the exit
            loop.call_soon_threadsafe(typed.put_nowait, data)
        loop.call_soon_threadsafe(typed.put_nowait, b"")

    async def feed() -> None:
        while True:
            data = await typed.get()
            while not typed.empty() and data:  # send what piled up in one request
                more = typed.get_nowait()
                if not more:
                    typed.put_nowait(more)
                    break
                data += more
            if data:
                process.stdin.write(data)
            else:
                process.stdin.write_eof()
            await process.stdin.drain.aio()
            if not data:
                return

    async def show(reader: Any, out: Any) -> None:
        async for chunk in reader._chunks():
            out.write(chunk)
            out.flush()

    saved = None
    if use_pty:
        import termios
        import tty

        saved = termios.tcgetattr(0)
        tty.setraw(0)
        loop.add_reader(0, readable)
    elif sys.stdin.isatty():
        typed.put_nowait(b"")  # nothing is piped in: the command's stdin ends at once
    else:
        # A daemon thread: a command that ends before its input does must not wait for it.
        threading.Thread(target=read_all, daemon=True).start()
    feeding = asyncio.ensure_future(feed())
    try:
        await asyncio.gather(show(process.stdout, sys.stdout.buffer),
                             show(process.stderr, sys.stderr.buffer))
        return await process.wait.aio()
    finally:
        feeding.cancel()
        if saved is not None:
            loop.remove_reader(0)
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


@sandbox_group.command("terminate")
@click.argument("sandbox_id")
def sandbox_terminate(sandbox_id: str) -> None:
    """Stop sandbox SANDBOX_ID and everything in it."""
    Sandbox.from_id(sandbox_id).terminate()
    click.echo(f"Terminated {sandbox_id}.")
