"""Who chooses how containers are isolated: the operator sets a floor (the server's isolation,
or a workspace's default that an operator lowered), and tenants may only ask for more."""

from __future__ import annotations

from ...backends.isolation import MODES

STRENGTH = {mode: i for i, mode in enumerate(MODES)}  # process < namespaces < gvisor


def floor(server_mode: str, workspace_mode: str | None) -> str:
    """The weakest isolation a workspace's containers get without an operator's say."""
    if workspace_mode and STRENGTH[workspace_mode] < STRENGTH[server_mode]:
        return workspace_mode
    return server_mode


def refusal(mode: str | None, floor_mode: str, what: str) -> str | None:
    """Why `mode` may not be chosen by a tenant over this floor, or None when it may."""
    if mode is None or STRENGTH[mode] >= STRENGTH[floor_mode]:
        return None
    stronger = " or ".join(repr(m) for m in MODES if STRENGTH[m] >= STRENGTH[floor_mode])
    return (f"{what} asks for isolation={mode!r}, weaker than this server's floor "
            f"({floor_mode!r}); only the operator can lower it, with an admin token made on "
            f"the server's machine (`firebox token create --admin`) or `firebox server "
            f"--isolation {mode}`; ask for {stronger} instead")
