"""What a function names by id (secrets, volumes, code blobs) must be its own workspace's, and
its isolation no weaker than the operator allows: checked before a spec is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...store import schema as s
from .errors import ApiError, invalid, not_found
from .isolation_floor import floor, refusal
from .workspaces import Identity

if TYPE_CHECKING:
    from .plane import ControlPlane


async def owned(cp: ControlPlane, workspace_id: str, digests: list[str]) -> set[str]:
    """Which of digests this workspace uploaded (and are still on disk)."""
    found: set[str] = set()
    for i in range(0, len(digests), 500):
        rows = await cp.db.read(
            sa.select(s.blob_owners.c.sha256).where(
                s.blob_owners.c.workspace_id == workspace_id,
                s.blob_owners.c.sha256.in_(digests[i:i + 500]),
            )
        )
        found.update(r[0] for r in rows)
    return {d for d in found if cp.blobs.has(d)}


async def _missing(cp: ControlPlane, table: sa.Table, workspace_id: str, ids: list[str]
                   ) -> list[str]:
    if not ids:
        return []
    rows = await cp.db.read(sa.select(table.c.id).where(
        table.c.id.in_(ids), table.c.workspace_id == workspace_id))
    found = {r[0] for r in rows}
    return [i for i in ids if i not in found]


async def check_secrets(cp: ControlPlane, who: Identity, what: str, ids: list[str]) -> None:
    missing = await _missing(cp, s.secrets, who.workspace_id, ids)
    if missing:
        raise not_found(f"{what} names the secret {missing[0]}, which is not in this "
                        "workspace; create it with firebox.Secret.from_name(...) first.")


async def check_refs(cp: ControlPlane, who: Identity, what: str, spec: dict[str, Any]) -> None:
    """Refuse a spec that names another workspace's objects or isolation below the floor;
    marks the spec when an operator chose its isolation."""
    await check_secrets(cp, who, what, list(spec.get("secrets") or []))
    volumes = list((spec.get("volumes") or {}).values())
    missing = await _missing(cp, s.volumes, who.workspace_id, volumes)
    if missing:
        raise not_found(f"{what} names the volume {missing[0]}, which is not in this "
                        "workspace; create it with firebox.Volume.from_name(..., "
                        "create_if_missing=True) first.")
    digests = [*((spec.get("code") or {}).get("files") or {}).values()]
    if spec.get("serialized"):
        digests.append(spec["serialized"])
    have = await owned(cp, who.workspace_id, sorted(set(digests)))
    if len(have) != len(set(digests)):
        raise invalid(f"{what} names code that was not uploaded from this workspace; run or "
                      "deploy the app again to upload it.")
    if who.operator:
        spec["isolation_by_operator"] = True
        return
    spec.pop("isolation_by_operator", None)
    floor_mode = floor(cp.backend.isolation, cp.scheduler.workspace_isolation.get(who.workspace_id))
    problem = refusal(spec.get("isolation"), floor_mode, what)
    if problem:
        raise ApiError(403, "AuthError", problem + ".")
