"""What a client asks of a sandbox, checked and made into what the sandbox manager runs: a new
sandbox's Spec (its image's layers and environment, its secrets' environment, volumes, ports
and network) and a command's environment and time limit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from . import tunnels
from .errors import invalid, not_found
from .objects import check_name
from .ownership import check_secrets
from .sandbox_volumes import check_mount_path
from .sandboxes import MAX_TIMEOUT, Exec, Sandbox, Spec, check_allowlist
from .volumes import VOLUMES
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane

DEFAULT_TIMEOUT = 300.0  # seconds a sandbox lives unless it asks for another timeout


def _seconds(value: float | None, what: str, default: float | None) -> float | None:
    if value is None:
        return default
    if not 0 < value <= MAX_TIMEOUT:
        raise invalid(f"{what} must be a number of seconds between 0 and {MAX_TIMEOUT}.")
    return float(value)


def _check_workdir(workdir: str | None) -> None:
    if workdir is not None and not workdir.startswith("/"):
        raise invalid("workdir= must be an absolute path.")


async def _secret_env(cp: ControlPlane, who: Identity, secret_ids: list[str]) -> dict[str, str]:
    await check_secrets(cp, who, "The sandbox", secret_ids)
    await cp.vault.load(secret_ids)
    return cp.vault.env_for({"secrets": secret_ids}, who.workspace_id)


@dataclass
class _Image:
    layers: list[str] = field(default_factory=list)  # newest first
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    built: str | None = None  # the id of a built image (not a snapshot's)
    rooted: bool = False  # a registry image's: the sandbox's whole root


async def _image(cp: ControlPlane, who: Identity, image: str | None) -> _Image:
    """A sandbox's image: a snapshot of the workspace's (its layers), or an image the
    workspace built as functions' are (its layers, environment and workdir too)."""
    if not image:
        return _Image()
    rows = await cp.db.read(sa.select(s.sandbox_images).where(
        s.sandbox_images.c.id == image, s.sandbox_images.c.workspace_id == who.workspace_id))
    if rows:
        return _Image(json.loads(rows[0].layers))
    rows = await cp.db.read(sa.select(s.images).where(
        s.images.c.id == image, s.images.c.workspace_id == who.workspace_id))
    if not rows:
        raise not_found(f"No image {image} in this workspace.")
    layers: list[str] = json.loads(rows[0].layers)  # oldest first, as builds list them
    if not all(cp.images.exists(lid) for lid in layers):
        raise invalid(f"Image {image}'s layers were pruned since it was built; pass the Image "
                      "itself to Sandbox.create(image=) to build it again.")
    config = json.loads(rows[0].config) if rows[0].config else {}
    return _Image(layers[::-1], json.loads(rows[0].env), rows[0].workdir, image,
                  bool(config.get("rootfs")))


async def create(cp: ControlPlane, who: Identity, app: Any, *, name: str | None,
                 args: list[str], env: dict[str, str], secrets: list[str],
                 timeout: float | None, idle_timeout: float | None, workdir: str | None,
                 cpu: float | None, memory: int | None, image: str | None,
                 tags: dict[str, str], volumes: dict[str, str], block_network: bool,
                 cidr_allowlist: list[str] | None, encrypted_ports: list[int],
                 unencrypted_ports: list[int], pty: bool) -> Sandbox:
    """Start a sandbox in the app (a row of apps) from a create request's fields, checked."""
    if app.state == "stopped":
        raise invalid(f"App {app.id} has stopped; sandboxes need a running app.")
    if name is not None:
        check_name("sandbox", name)
    base = await _image(cp, who, image)
    env = base.env | dict(env) | await _secret_env(cp, who, secrets)
    _check_workdir(workdir)
    mounts = {check_mount_path(path): await VOLUMES.resolve(cp, who, ref)
              for path, ref in volumes.items()}
    try:
        ports = tunnels.check_ports(encrypted_ports, unencrypted_ports)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if ports and block_network:
        raise invalid("Tunnels need the sandbox on a network of its own: drop "
                      "block_network=True (egress stays closed unless cidr_allowlist= opens it).")
    network = None
    if (cidr_allowlist or ports) and not block_network:
        try:
            network = check_allowlist(cidr_allowlist or [])
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if not cp.sandboxes.networks:
            raise invalid("cidr_allowlist= and tunnels need nftables and iproute2 on the server "
                          "(scripts/install.sh installs them); leave them out for no network.")
    spec = Spec(args=args, env=env, workdir=workdir or base.workdir,
                timeout=_seconds(timeout, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
                idle_timeout=_seconds(idle_timeout, "idle_timeout", None),
                cpu=cpu, memory_mb=memory, layers=base.layers,
                volumes=mounts, network=network, ports=ports, pty=pty, image_id=base.built,
                rooted=base.rooted)
    return await cp.sandboxes.create(who.workspace_id, app.id, name, dict(tags), spec)


async def exec_command(cp: ControlPlane, who: Identity, sb: Sandbox, *, args: list[str],
                       env: dict[str, str], secrets: list[str], workdir: str | None,
                       timeout: float | None, pty: bool,
                       pty_size: tuple[int, int] | None) -> Exec:
    """Start a command in a running sandbox from an exec request's fields, checked; with a
    pty, pty_size is the terminal's (rows, columns)."""
    env = dict(env) | await _secret_env(cp, who, secrets)
    _check_workdir(workdir)
    size = list(pty_size) if pty_size else None
    return cp.sandboxes.exec(sb, args, env, workdir, _seconds(timeout, "timeout", None),
                             pty=pty, size=size)
