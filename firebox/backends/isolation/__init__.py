"""How a container's process is launched: `process` (no isolation), `namespaces` (bubblewrap) or
`gvisor` (runsc), and what each lets the container see; sandboxes' roots and launch likewise.

modes: the modes and which this host has; view: what a container sees (its Walls, its
file view); bubblewrap and gvisor: each launcher's command; sandbox_root: a sandbox's overlay root
and the layers under it; launch: the whole command line, network namespace and cgroups around.
"""

from .launch import in_cgroup, launcher, sandbox_argv
from .modes import (
    GVISOR,
    MODES,
    NAMESPACES,
    PROCESS,
    SANDBOX_MODES,
    IsolationUnavailable,
    check_mode,
    default_mode,
    sandbox_default_mode,
)
from .sandbox_root import (
    SANDBOX_FROM_HOST,
    SandboxRoot,
    sandbox_base,
    statx_shim,
    visible_hidden,
)
from .view import (
    CA_BUNDLE,
    CONTAINER_GID,
    CONTAINER_UID,
    SOCKET,
    SYSTEM_DIRS,
    Walls,
    host_secrets,
    python_paths,
    trust_env,
    volumes_at_path,
)

__all__ = [
    "CA_BUNDLE", "CONTAINER_GID", "CONTAINER_UID", "GVISOR", "MODES", "NAMESPACES", "PROCESS",
    "SANDBOX_FROM_HOST", "SANDBOX_MODES", "SOCKET", "SYSTEM_DIRS", "IsolationUnavailable",
    "Walls", "SandboxRoot", "check_mode", "default_mode", "host_secrets", "in_cgroup",
    "launcher", "python_paths", "sandbox_argv", "sandbox_base", "sandbox_default_mode",
    "statx_shim", "trust_env", "visible_hidden", "volumes_at_path",
]
