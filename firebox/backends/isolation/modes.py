"""The isolation modes a container or sandbox can run under, and which of them this host has."""

from __future__ import annotations

import shutil

from ...wire import settings

PROCESS, NAMESPACES, GVISOR = "process", "namespaces", "gvisor"
MODES = (PROCESS, NAMESPACES, GVISOR)
SANDBOX_MODES = (NAMESPACES, GVISOR)


class IsolationUnavailable(RuntimeError):
    pass


def default_mode() -> str:
    """FIREBOX_ISOLATION when set, else namespaces where bubblewrap is installed, else process."""
    chosen = settings.ISOLATION.get()
    if chosen:
        return check_mode(chosen)
    return NAMESPACES if shutil.which("bwrap") else PROCESS


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise IsolationUnavailable(
            f"isolation={mode!r} is not one of {', '.join(MODES)}; pick one of those."
        )
    if mode == NAMESPACES and shutil.which("bwrap") is None:
        raise IsolationUnavailable(
            "isolation='namespaces' needs bubblewrap, which is not installed here; "
            "install the Debian package bubblewrap or choose isolation='process'."
        )
    if mode == GVISOR and shutil.which("runsc") is None:
        raise IsolationUnavailable(
            "isolation='gvisor' needs gVisor's runsc, which is not installed here; "
            "install the Debian package runsc or choose isolation='namespaces'."
        )
    return mode


def sandbox_default_mode() -> str:
    """The operator's choice (FIREBOX_SANDBOX_ISOLATION), else gVisor where runsc is
    installed, else bubblewrap namespaces."""
    chosen = settings.SANDBOX_ISOLATION.get()
    if chosen:
        if chosen not in SANDBOX_MODES:
            raise IsolationUnavailable(f"FIREBOX_SANDBOX_ISOLATION={chosen!r}: sandboxes run "
                                       f"under {' or '.join(SANDBOX_MODES)}.")
        tool = "runsc" if chosen == GVISOR else "bwrap"
        if not shutil.which(tool):
            raise IsolationUnavailable(f"FIREBOX_SANDBOX_ISOLATION={chosen} needs {tool}, which "
                                       "is not installed; scripts/install.sh installs it.")
        return chosen
    if shutil.which("runsc"):
        return GVISOR
    if shutil.which("bwrap"):
        return NAMESPACES
    raise IsolationUnavailable(
        "Sandboxes need gVisor (Debian package runsc) or bubblewrap (package bubblewrap); "
        "install one of them."
    )
