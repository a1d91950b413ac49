"""API keys made for the model gateway alone: each belongs to a workspace's environment, may be
scoped to some of its model names, and may carry limits of its own (core/model_limits.py). A
key authenticates the OpenAI routes only (api/auth.py refuses it anywhere else); only the hash
of its secret is kept."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ...store import schema as s
from ...store.db import Database
from ...wire import ids
from .errors import invalid, not_found
from .model_limits import check_limits


@dataclass(frozen=True)
class ModelKey:
    id: str
    name: str
    models: tuple[str, ...] | None  # None: every model of its environment
    limits: dict[str, Any]

    def allows(self, model: str) -> bool:
        """Whether the key may call the model (an adapter BASE:ADAPTER goes by its base)."""
        return self.models is None or model in self.models or model.partition(":")[0] in self.models


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ModelKeys:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.known: dict[str, tuple[str, str, ModelKey]] = {}  # token -> (workspace, env, key)

    async def create(self, workspace_id: str, environment: str, name: str,
                     models: list[str] | None, limits: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise invalid("A key's name is 1-128 characters: give one with --name.")
        if models is not None and (not isinstance(models, list) or not all(
                isinstance(m, str) and 0 < len(m) <= 260 for m in models)):
            raise invalid("models must be a list of model names.")
        limits = check_limits(limits)
        key_id, token = ids.new_model_key()
        row = {"id": key_id, "workspace_id": workspace_id, "environment": environment,
               "secret_hash": _hash(token), "name": name,
               "models": json.dumps(models) if models is not None else None,
               "limits": json.dumps(limits), "created_at": time.time()}
        await self.db.write(lambda conn: conn.execute(s.model_keys.insert().values(**row)))
        return {"key_id": key_id, "key": token, "name": name, "models": models,
                "limits": limits}

    async def list(self, workspace_id: str, environment: str) -> list[dict[str, Any]]:
        rows = await self.db.read(
            sa.select(s.model_keys).where(s.model_keys.c.workspace_id == workspace_id,
                                          s.model_keys.c.environment == environment)
            .order_by(s.model_keys.c.created_at))
        return [{"key_id": r.id, "name": r.name, "created_at": r.created_at,
                 "models": json.loads(r.models) if r.models else None,
                 "limits": json.loads(r.limits)} for r in rows]

    async def delete(self, workspace_id: str, key_id: str) -> None:
        """Delete a key; it stops authenticating at once."""
        done = await self.db.write(lambda conn: conn.execute(
            s.model_keys.delete().where(s.model_keys.c.id == key_id,
                                        s.model_keys.c.workspace_id == workspace_id)))
        if not done.rowcount:
            raise not_found(f"No model API key '{key_id}' in this workspace.")
        for token in [t for t, v in self.known.items() if v[2].id == key_id]:
            del self.known[token]

    async def identify(self, token: str) -> tuple[str, str, ModelKey] | None:
        """(workspace id, environment, key) of a gateway key, or None."""
        found = self.known.get(token)
        if found is not None:
            return found
        key_id = ids.parse_model_key(token)
        if key_id is None:
            return None
        rows = await self.db.read(sa.select(s.model_keys).where(s.model_keys.c.id == key_id))
        if not rows or not secrets.compare_digest(rows[0].secret_hash, _hash(token)):
            return None
        r = rows[0]
        models = tuple(json.loads(r.models)) if r.models else None
        found = (r.workspace_id, r.environment,
                 ModelKey(r.id, r.name, models, json.loads(r.limits)))
        self.known[token] = found
        return found
