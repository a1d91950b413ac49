"""What the scheduler needs to know about a function: its merged spec and where it belongs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...wire.spec import DEFAULTS


@dataclass
class FunctionRecord:
    id: str
    app_id: str
    workspace_id: str
    name: str
    spec: dict[str, Any]
    environment: str = "main"  # its app's

    def get(self, key: str) -> Any:
        value = self.spec.get(key)
        return DEFAULTS.get(key) if value is None else value

    @property
    def per_container(self) -> int:
        """How many inputs one container holds at once."""
        return int(self.get("max_inputs")) * int(self.get("batch_max_size") or 1)

    @property
    def target_per_container(self) -> int:
        target = self.get("target_inputs") or self.get("max_inputs")
        return int(target) * int(self.get("batch_max_size") or 1)

    @property
    def prefetches(self) -> bool:
        """Whether its containers may hold inputs beyond the ones they run, queued in the
        container in order: not for web requests (each is answered as it comes), batches
        (the container's batcher gathers those) or single-use containers."""
        return not (web_entries(self.spec) or self.get("batch_max_size")
                    or self.get("single_use_containers"))

    def retry_delay(self, attempts_done: int) -> float | None:
        """Seconds before retry number attempts_done + 1, or None when retries are used up."""
        policy = self.spec.get("retries")
        if not policy or attempts_done >= policy["max_retries"]:
            return None
        delay = policy["initial_delay"] * policy["backoff_coefficient"] ** attempts_done
        return float(min(delay, policy["max_delay"]))


def merged_spec(parent_spec: str, options: dict[str, Any] | None) -> dict[str, Any]:
    spec = json.loads(parent_spec)
    if options:
        spec.update(options)
    return spec


def web_entries(spec: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """What a function serves over HTTP: its own web config under None, and a class's web
    methods under their names."""
    entries: dict[str | None, dict[str, Any]] = {}
    if spec.get("web"):
        entries[None] = spec["web"]
    for name, info in (spec.get("methods") or {}).items():
        if info.get("web"):
            entries[name] = info["web"]
    return entries
