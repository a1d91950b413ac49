"""LoRA adapters loaded on demand into a model server's engine: the model gateway names a
request's adapter in the X-Firebox-Adapter header; before passing the request on, the
container loads the adapter from the adapters Volume through the engine's dynamic-LoRA endpoint
(vLLM's `POST /v1/load_lora_adapter`, which SGLang and our test engine answer too), once, and
again if the engine has let it go meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from ..wire import settings

HEADER = b"x-firebox-adapter"
LOAD_PATH = "/v1/load_lora_adapter"


def allow_runtime_loading() -> None:
    """Let an engine started by the function load adapters while it runs (vLLM asks for it)."""
    os.environ.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")


class AdapterLoader:
    """ASGI middleware in front of the engine's PortProxy."""

    def __init__(self, app: Any, http: Any, directory: str) -> None:
        self.app = app
        self.http = http  # the proxy's client, at the engine's port
        self.directory = directory
        self.loaded: set[str] = set()
        self.locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = None
        if scope["type"] == "http":
            found = [v for k, v in scope["headers"] if k == HEADER]
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != HEADER]}
            name = found[0].decode() if found else None
        if name and name not in self.loaded:
            problem = await self.load(name)
            if problem is not None:
                await _error(send, *problem)
                return
        await self.app(scope, receive, send)

    async def load(self, name: str) -> tuple[int, str] | None:
        """Load the adapter; the status and message to answer with where the engine refused."""
        lock = self.locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self.loaded:
                return None
            path = os.path.join(_local(self.directory), name)
            if "/" in name or name.startswith(".") or not os.path.isdir(path):
                return 404, f"The adapter `{name}` is not in the adapters volume."
            response = await self.http.post(LOAD_PATH, json={"lora_name": name,
                                                             "lora_path": path})
            text = response.text
            if response.status_code != 200 and "already" not in text.lower():
                return response.status_code, f"The engine did not load adapter `{name}`: {text}"
            self.loaded.add(name)
            return None


def _local(mount_path: str) -> str:
    """Where a volume's mount path really is in this container (under gVisor and process
    isolation its working copy lives in the container's directory: sdk/volume.py)."""
    paths = json.loads(settings.VOLUME_PATHS.get() or "{}")
    return str(paths.get(mount_path.rstrip("/"), mount_path))


async def _error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": "model", "code": "adapter_not_loaded"}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
