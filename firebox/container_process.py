"""A process in a sandbox, as `modal.container_process` names it."""

from .sdk.sandbox import ContainerProcess

__all__ = ["ContainerProcess"]
