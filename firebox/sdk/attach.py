"""Secrets and volumes attached to functions: checked when the function is declared, turned
into server ids when the app is published (or a with_options variant is first used)."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError
from .secret import Secret, resolve_all
from .volume import check_mounts, resolve_mounts


def check_secrets(secrets: Any) -> list[Secret]:
    if secrets is None:
        return []
    if isinstance(secrets, Secret) or not isinstance(secrets, list | tuple):
        raise InvalidError("secrets= takes a list of firebox.Secret objects.")
    for s in secrets:
        if not isinstance(s, Secret):
            raise InvalidError(f"secrets= takes firebox.Secret objects, not {type(s).__name__}.")
    return list(secrets)


def attach_spec(secrets: Any, volumes: Any, env: Any) -> dict[str, Any]:
    """The spec entries for secrets=, volumes= and env= (a dict that becomes the last secret,
    so it wins), holding the objects themselves until resolve_spec."""
    spec: dict[str, Any] = {}
    if secrets is not None or env is not None:
        listed = check_secrets(secrets)
        if env is not None:
            if not isinstance(env, dict):
                raise InvalidError("env= takes a dict of environment variables.")
            listed.append(Secret.from_dict(env))
        spec["secrets"] = listed
    if volumes is not None:
        spec["volumes"] = check_mounts(volumes)
    return spec


async def resolve_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of spec with Secret and Volume objects replaced by their ids."""
    if spec is None:
        return None
    out = dict(spec)
    if out.get("secrets"):
        out["secrets"] = await resolve_all(out["secrets"])
    if out.get("volumes"):
        out["volumes"] = await resolve_mounts(out["volumes"])
    return out
