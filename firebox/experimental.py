"""Modal's `modal.experimental` names that firebox serves: the deployed apps listed and one
stopped by name. (Its http_server, clustered, stop_fetching_inputs and concurrency setters are
not here yet; tests/test_modal_modules.py lists them.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _sync
from . import client as client_mod
from .exception import InvalidError, NotFoundError


@dataclass
class AppInfo:
    app_id: str
    name: str
    containers: int  # running now


def list_deployed_apps(environment_name: str = "", client: Any = None) -> list[AppInfo]:
    """The deployed apps of the environment (by default the client's), with their containers."""
    resp = _sync.run(client_mod.current().request("GET", "/v1/apps",
                                                  environment=environment_name or None))
    return [AppInfo(a["app_id"], a["name"], a["containers"]) for a in resp["apps"]
            if a["state"] == "deployed"]


def stop_app(name: str, *, environment_name: str | None = None, client: Any = None) -> None:
    """Stop the deployed app called name: its containers end and its URLs stop serving."""
    found = [a for a in list_deployed_apps(environment_name or "") if a.name == name]
    if not found:
        raise NotFoundError(f"No deployed app named '{name}'; `firebox app list` shows the "
                            "apps.")
    _sync.run(client_mod.current().request("POST", f"/v1/apps/{found[0].app_id}/stop",
                                           environment=environment_name or None))


__all__ = ["AppInfo", "InvalidError", "list_deployed_apps", "stop_app"]
