"""The SDK's side of a container: what the runtime asks of it (wire/user_code.py); firebox's
__init__ registers it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import client
from ..wire import user_code
from .cls import Cls, instantiate, lifecycle_methods
from .function import Function
from .partial import PartialFunction
from .volume import commit_all, mount_all


class _UserCode:
    def target(self, obj: Any) -> Any:
        if isinstance(obj, Cls):
            return obj._user_cls
        if isinstance(obj, Function):
            return obj._raw_f
        return obj

    def instantiate(self, user_cls: type, params: dict[str, Any]) -> Any:
        return instantiate(user_cls, params)

    def lifecycle_methods(self, user_cls: type, flag: str) -> list[PartialFunction]:
        return lifecycle_methods(user_cls, flag)

    async def mount_volumes(self, volumes: dict[str, str], container_root: Path) -> None:
        await mount_all(volumes, container_root)

    async def commit_volumes(self) -> None:
        await commit_all()

    async def forget_client(self) -> None:
        await client.forget()


def register() -> None:
    user_code.register(_UserCode())
