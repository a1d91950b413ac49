"""Which deployed function serves each model name of a workspace's environment: the model
gateway's registry (gateways/openai.py), kept beside the web routes (web_endpoints.py), which
publish to it. A name is served by the newest deployed function that declares it with
@model_api; an ephemeral app's (`firebox serve`) takes a name only while no live deployed one
holds it. A request names a model, an adapter of one as `BASE:ADAPTER`, or an adapter by its
own name; adapters are the directories at the root of the Volume mounted at the model's
`adapters` path."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...backends import isolation
from ...backends.isolation.view import volumes_at_path
from .functions import FunctionRecord, web_entries
from .model_router import ModelRouter

if TYPE_CHECKING:
    from .workspaces import Identity

ADAPTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ADAPTERS_FRESH = 5.0  # seconds a volume's list of adapters is reused


@dataclass(frozen=True)
class Served:
    """Where one model name is served."""

    function_id: str
    method: str | None
    deployed: bool
    config: dict[str, Any]  # the web entry's "model"


@dataclass(frozen=True)
class Target:
    """A request's model, resolved."""

    function: FunctionRecord
    method: str | None
    base: str
    adapter: str | None
    config: dict[str, Any]
    router: ModelRouter


class ModelRoutes:
    def __init__(self, load_function: Callable[[str], Awaitable[FunctionRecord | None]],
                 accepts: Callable[[FunctionRecord], bool],
                 list_adapters: Callable[[str], Awaitable[list[str]]]) -> None:
        self.load_function = load_function
        self.accepts = accepts
        self.list_adapters = list_adapters  # a volume id -> the directories at its root
        self.names: dict[tuple[str, str, str], Served] = {}  # (workspace, env, name) ->
        self.routers: dict[str, ModelRouter] = {}  # function id -> its pool's router
        self.adapter_lists: dict[str, tuple[float, list[str]]] = {}

    async def publish(self, fn: FunctionRecord, method: str | None, web: dict[str, Any],
                      deployed: bool) -> None:
        config = web.get("model")
        if not config:
            return
        for name in config["names"]:
            key = (fn.workspace_id, fn.environment, name)
            held = self.names.get(key)
            if not deployed and held is not None and held.deployed and held.function_id != fn.id:
                holder = await self.load_function(held.function_id)
                if holder is not None and self.accepts(holder):
                    continue  # a dev run does not take a deployed model's name
            self.names[key] = Served(fn.id, method, deployed, config)
        self.routers[fn.id] = ModelRouter(config.get("routing", "prefix"))

    def unpublish(self, function_ids: set[str]) -> None:
        for key in [k for k, v in self.names.items() if v.function_id in function_ids]:
            del self.names[key]

    async def _live(self, who: Identity) -> list[tuple[str, Served, FunctionRecord]]:
        found = []
        for (ws, env, name), served in list(self.names.items()):
            if ws != who.workspace_id or env != who.environment:
                continue
            fn = await self.load_function(served.function_id)
            if fn is not None and self.accepts(fn):
                found.append((name, served, fn))
        return found

    async def adapters(self, fn: FunctionRecord, config: dict[str, Any]) -> list[str]:
        """The adapters in the model's adapters Volume, read at most every few seconds."""
        path = config.get("adapters")
        volume_id = (fn.spec.get("volumes") or {}).get(path) if path else None
        if volume_id is None:
            return []
        cached = self.adapter_lists.get(volume_id)
        if cached is None or time.monotonic() - cached[0] > ADAPTERS_FRESH:
            names = [n for n in await self.list_adapters(volume_id) if ADAPTER.match(n)]
            cached = self.adapter_lists[volume_id] = (time.monotonic(), names)
        return cached[1]

    async def models(self, who: Identity) -> list[dict[str, Any]]:
        """The models the identity may call: each name, and each adapter as BASE:ADAPTER."""
        out = []
        for name, served, fn in await self._live(who):
            out.append({"id": name, "function_id": fn.id, "adapter": None})
            for adapter in await self.adapters(fn, served.config):
                out.append({"id": f"{name}:{adapter}", "function_id": fn.id, "parent": name,
                            "adapter": adapter})
        return sorted(out, key=lambda m: m["id"])

    async def find(self, who: Identity, model: str) -> Target | None:
        """What serves the requested model, or None."""
        base, _, adapter = model.partition(":")
        served = self.names.get((who.workspace_id, who.environment, base))
        fn = await self.load_function(served.function_id) if served else None
        if served is not None and fn is not None and self.accepts(fn):
            if not adapter or adapter in await self.adapters(fn, served.config):
                return self._target(fn, served, base, adapter or None)
            return None
        if not adapter:  # an adapter by its own name
            for name, found, function in await self._live(who):
                if model in await self.adapters(function, found.config):
                    return self._target(function, found, name, model)
        return None

    def short_path(self, target: Target, mode: str) -> int | None:
        """The engine's port, where the gateway may call it itself (gateways/direct.py): a
        web_server's, in a container whose loopback the control plane reaches (not gVisor's,
        whose netstack is its own), and, for adapters, whose volumes are at their mount paths
        (the engine is told an adapter's path)."""
        web = web_entries(target.function.spec).get(target.method) or {}
        if web.get("type") != "web_server" or mode == isolation.GVISOR:
            return None
        adapters = target.config.get("adapters")
        volumes = target.function.spec.get("volumes") or {}
        if adapters and adapters not in volumes_at_path(mode, volumes):
            return None
        return int(web["port"])

    def _target(self, fn: FunctionRecord, served: Served, base: str,
                adapter: str | None) -> Target:
        router = self.routers.setdefault(fn.id, ModelRouter(served.config.get("routing", "")))
        return Target(fn, served.method, base, adapter, served.config, router)
