"""A command running remotely (a sandbox's, or one exec'd into a container), attached to this
terminal: its output streams here as it comes, stdin goes to it, and on a pty this terminal is
raw and the command's window has its size."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import threading
import tty
from typing import Any

import click

from .. import client as client_mod
from ..exception import Error
from ..sdk.sandbox import ContainerProcess

RESIZE_POLL = 0.25  # seconds between looks at this terminal's size


def check_pty(use_pty: bool | None) -> bool:
    """--pty, --no-pty, or a terminal when stdin is one."""
    if use_pty is None:
        return sys.stdin.isatty()
    if use_pty and not sys.stdin.isatty():
        raise click.UsageError("--pty needs a terminal on stdin; leave it out to pipe input.")
    return use_pty


def window() -> list[int] | None:
    """This terminal's (rows, columns), or None (the command gets 24x80)."""
    try:
        columns, rows = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return [rows, columns] if rows and columns else None


def exit_with(code: int) -> None:
    """Exit with a command's status; killed by a signal: 128 + its number, as a shell says."""
    sys.exit(128 - code if code < 0 else code & 0xFF)


async def attach(process: ContainerProcess, use_pty: bool) -> int:
    """On firebox's loop: pump stdin to the command and its output here; its exit code. On a
    pty, the command's terminal follows this one's size."""
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

    async def follow_size() -> None:
        # Polled, not SIGWINCH: this runs on firebox's loop, and only the main thread gets
        # signals.
        size = window()
        while True:
            await asyncio.sleep(RESIZE_POLL)
            now = window()
            if now and now != size:
                size = now
                with contextlib.suppress(Error):  # it ended meanwhile: nothing to resize
                    await client_mod.current().request("POST", f"{process._path}/resize",
                                                       packed={"size": size})

    saved = None
    if use_pty:
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        loop.add_reader(0, readable)
    elif sys.stdin.isatty():
        typed.put_nowait(b"")  # nothing is piped in: the command's stdin ends at once
    else:
        # A daemon thread: a command that ends before its input does must not wait for it.
        threading.Thread(target=read_all, daemon=True).start()
    feeding = asyncio.ensure_future(feed())
    resizing = asyncio.ensure_future(follow_size()) if use_pty else None
    try:
        await asyncio.gather(show(process.stdout, sys.stdout.buffer),
                             show(process.stderr, sys.stderr.buffer))
        return await process.wait.aio()
    finally:
        feeding.cancel()
        if resizing is not None:
            resizing.cancel()
        if saved is not None:
            loop.remove_reader(0)
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


async def exec_in_container(container_id: str, command: list[str], use_pty: bool) -> int:
    """Run command inside a running function container, attached here; its exit code."""
    resp = await client_mod.current().request(
        "POST", f"/v1/containers/{container_id}/exec",
        packed={"args": command, "pty": use_pty, "pty_size": window() if use_pty else None})
    process = ContainerProcess(f"/v1/containers/{container_id}/exec/{resp['exec_id']}", False)
    return await attach(process, use_pty)
