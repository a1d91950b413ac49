"""forward() from inside a function's or class's container: its port reached from outside
through the plane's tunnels (core/tunnels.py), for as long as the block or the container lasts.
Only a container may ask, and only for its own ports."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .errors import ApiError, invalid, not_found
from .pools import Container
from .tunnels import Endpoint
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane


def _container(cp: ControlPlane, who: Identity) -> Container:
    """The running container the caller is."""
    if who.kind != "container" or who.container_id is None:
        raise invalid("forward() works only inside a firebox container (in a function or class "
                      "the app runs); for a sandbox's ports use Sandbox.create(encrypted_ports=).")
    c = cp.scheduler.containers.get(who.container_id)
    if c is None:
        raise not_found(f"Container {who.container_id} is not running.")
    return c


async def open_forward(cp: ControlPlane, who: Identity, port: int, unencrypted: bool
                       ) -> Endpoint:
    """Tunnel a port of the caller's container; where clients reach it."""
    c = _container(cp, who)
    if c.pool.function.get("block_network"):
        raise invalid("This container was made with block_network=True, so nothing outside can "
                      "reach it; drop block_network to forward() a port.")
    owner = f"{c.id}/{port}"
    if cp.tunnels.endpoints(owner):
        raise ApiError(409, "AlreadyExistsError",
                       f"Port {port} is forwarded already; leave the first forward() block "
                       "before opening another for it.")
    # The backend connects as a client inside the container would (it has a network of its own).
    dial = functools.partial(cp.backend.connect, c.id)
    opened = await cp.tunnels.open(owner, dial, {port: not unencrypted})
    return opened[port]


async def close_forward(cp: ControlPlane, who: Identity, port: int) -> None:
    c = _container(cp, who)
    await cp.tunnels.close(f"{c.id}/{port}")
