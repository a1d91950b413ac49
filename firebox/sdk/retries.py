"""Retry policies for failed inputs."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError
from ..wire import spec as wire_spec


class Retries:
    def __init__(
        self,
        *,
        max_retries: int,
        backoff_coefficient: float = wire_spec.BACKOFF_DEFAULT,
        initial_delay: float = wire_spec.INITIAL_DELAY_DEFAULT,
        max_delay: float = wire_spec.MAX_DELAY_DEFAULT,
    ) -> None:
        if not 0 <= max_retries <= wire_spec.RETRIES_MAX:
            raise InvalidError(f"max_retries must be between 0 and {wire_spec.RETRIES_MAX}.")
        if not wire_spec.BACKOFF_MIN <= backoff_coefficient <= wire_spec.BACKOFF_MAX:
            raise InvalidError(f"backoff_coefficient must be between {wire_spec.BACKOFF_MIN} and "
                               f"{wire_spec.BACKOFF_MAX}.")
        if not 0.0 <= initial_delay <= wire_spec.INITIAL_DELAY_MAX:
            raise InvalidError(
                f"initial_delay must be between 0 and {wire_spec.INITIAL_DELAY_MAX:g} seconds.")
        if not wire_spec.MAX_DELAY_MIN <= max_delay <= wire_spec.MAX_DELAY_MAX:
            raise InvalidError(f"max_delay must be between {wire_spec.MAX_DELAY_MIN:g} and "
                               f"{wire_spec.MAX_DELAY_MAX:g} seconds.")
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
        if not 0 <= retries <= wire_spec.RETRIES_MAX:
            raise InvalidError(f"retries={retries} is out of range; give between 0 and "
                               f"{wire_spec.RETRIES_MAX} retries.")
        retries = Retries(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)
    return retries.to_spec()
