"""Retry policies for failed inputs."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError


class Retries:
    def __init__(
        self,
        *,
        max_retries: int,
        backoff_coefficient: float = 2.0,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        if not 0 <= max_retries <= 10:
            raise InvalidError("max_retries must be between 0 and 10.")
        if not 1.0 <= backoff_coefficient <= 10.0:
            raise InvalidError("backoff_coefficient must be between 1.0 and 10.0.")
        if not 0.0 <= initial_delay <= 60.0:
            raise InvalidError("initial_delay must be between 0 and 60 seconds.")
        if not 1.0 <= max_delay <= 60.0:
            raise InvalidError("max_delay must be between 1 and 60 seconds.")
        self.max_retries = max_retries
        self.backoff_coefficient = backoff_coefficient
        self.initial_delay = initial_delay
        self.max_delay = max_delay

    def to_spec(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "backoff_coefficient": self.backoff_coefficient,
            "initial_delay": self.initial_delay,
            "max_delay": self.max_delay,
        }


def retries_spec(retries: int | Retries | None) -> dict[str, Any] | None:
    if retries is None:
        return None
    if isinstance(retries, bool) or not isinstance(retries, int | Retries):
        raise InvalidError("retries must be an int or firebox.Retries(...).")
    if isinstance(retries, int):
        retries = Retries(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)
    return retries.to_spec()
