"""Secrets at rest: Fernet-encrypted with a key only the server holds (secrets.key, mode 0600,
in the state directory), and decrypted into the environment of the containers that use them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from ...store import schema as s
from ...store.db import Database

KEY_FILE = "secrets.key"


def load_key(path: Path) -> bytes:
    """The server's key, made on first use; readable by the server's user only."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # fails if another process made the key first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


class Vault:
    def __init__(self, state_dir: Path, db: Database) -> None:
        key = load_key(state_dir / KEY_FILE)
        self.fernet = Fernet(key)
        # Call keys are derived from the same secret: a function's key is given only to its own
        # workspace, and lets call ids made with it skip the lookup of who owns them.
        self._call_secret = hashlib.sha256(b"firebox call keys\0" + key).digest()
        self.db = db
        self.cache: dict[str, tuple[str, dict[str, str]]] = {}  # id -> (workspace, env)

    def call_key(self, function_id: str) -> str:
        """The key with which a function's callers tag the ids of calls they make."""
        return hmac.new(self._call_secret, function_id.encode(), hashlib.sha256).hexdigest()[:32]

    def encrypt(self, env: dict[str, str]) -> bytes:
        return self.fernet.encrypt(json.dumps(env).encode())

    def decrypt(self, data: bytes) -> dict[str, str]:
        try:
            env: dict[str, str] = json.loads(self.fernet.decrypt(data))
        except InvalidToken:
            raise RuntimeError(
                f"A secret could not be decrypted: the server's {KEY_FILE} is not the key it "
                "was stored with; restore that key or create the secret again."
            ) from None
        return env

    def remember(self, secret_id: str, workspace_id: str, env: dict[str, str]) -> None:
        self.cache[secret_id] = (workspace_id, env)

    def forget(self, secret_id: str) -> None:
        self.cache.pop(secret_id, None)

    async def load(self, secret_ids: list[str]) -> None:
        """Decrypt the given secrets into the cache that env_for reads."""
        wanted = [i for i in secret_ids if i not in self.cache]
        if not wanted:
            return
        rows = await self.db.read(
            sa.select(s.secrets.c.id, s.secrets.c.workspace_id, s.secrets.c.data)
            .where(s.secrets.c.id.in_(wanted))
        )
        for row in rows:
            self.cache[row.id] = (row.workspace_id, self.decrypt(row.data))

    def env_for(self, spec: dict[str, Any], workspace_id: str) -> dict[str, str]:
        """The environment a function's secrets give its containers; later secrets win. Only
        the function's own workspace's secrets count, whatever ids its spec names."""
        env: dict[str, str] = {}
        for secret_id in spec.get("secrets") or ():
            owner, values = self.cache.get(secret_id, ("", {}))
            if owner == workspace_id:
                env.update(values)
        return env
