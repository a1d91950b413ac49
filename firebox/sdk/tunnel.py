"""Tunnels: how to reach a port from outside (Modal's names and fields). A sandbox's come from
`sb.tunnels()`; a function's or class's container opens its own with `forward(port)`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from .. import _sync
from .. import client as client_mod
from ..exception import InvalidError
from ..wire import settings


@dataclass(frozen=True)
class Tunnel:
    host: str
    port: int  # TLS, terminated by the server with its certificate
    unencrypted_host: str = ""
    unencrypted_port: int = 0

    @property
    def url(self) -> str:
        """The HTTPS URL of the port."""
        return f"https://{self.host}" + ("" if self.port == 443 else f":{self.port}")

    @property
    def tls_socket(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tcp_socket(self) -> tuple[str, int]:
        """Plain TCP, for ports opened with unencrypted=True (unencrypted_ports= on a
        sandbox)."""
        if not self.unencrypted_host:
            raise InvalidError("This tunnel has no unencrypted TCP socket; forward the port "
                               "with unencrypted=True (a sandbox: unencrypted_ports=) for one.")
        return (self.unencrypted_host, self.unencrypted_port)

    @classmethod
    def _of(cls, t: dict[str, Any]) -> Tunnel:
        return cls(t["host"], t["port"], t["unencrypted_host"], t["unencrypted_port"])


async def _open(port: int, unencrypted: bool) -> Tunnel:
    if not settings.CONTAINER_ID.get():
        raise InvalidError("forward() works only inside a firebox container (in a function or "
                           "class the app runs); for a sandbox's ports use "
                           "Sandbox.create(encrypted_ports=...) and sb.tunnels().")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidError(f"forward() takes a port number (1-65535), not {port!r}.")
    resp = await client_mod.current().request(
        "POST", "/v1/tunnels", packed={"port": port, "unencrypted": bool(unencrypted)})
    return Tunnel._of(resp)


async def _close(port: int) -> None:
    await client_mod.current().request("DELETE", f"/v1/tunnels/{port}")


class _Forward:
    """`with forward(8000) as tunnel:` (and `async with forward.aio(8000)`): the container's
    port reachable from outside while the block lasts, through the server, over TLS (and plain
    TCP with unencrypted=True). Serve on 0.0.0.0 or 127.0.0.1 in the container."""

    @contextlib.contextmanager
    def __call__(self, port: int, *, unencrypted: bool = False) -> Iterator[Tunnel]:
        tunnel = _sync.run(_open(port, unencrypted))
        try:
            yield tunnel
        finally:
            _sync.run(_close(port))

    @contextlib.asynccontextmanager
    async def aio(self, port: int, *, unencrypted: bool = False) -> AsyncIterator[Tunnel]:
        tunnel = await _sync.run_async(_open(port, unencrypted))
        try:
            yield tunnel
        finally:
            await _sync.run_async(_close(port))


forward = _Forward()
