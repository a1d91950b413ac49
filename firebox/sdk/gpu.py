"""The gpu= option: "H100", "A100-80GB:2", "any", or a list of acceptable choices."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError
from ..wire.spec import ISOLATION_MODES

# The types a function may ask for (Modal's names; the backends' short names of NVML's).
KNOWN_TYPES = ("T4", "L4", "A10", "A10G", "A100", "A100-40GB", "A100-80GB", "L40S", "H100",
               "H200", "B200", "V100", "ANY")


def gpu_spec(value: Any) -> list[dict[str, Any]] | None:
    """[{"type": "H100", "count": 2}, ...], best choice first; None for no GPU."""
    if value is None:
        return None
    choices = value if isinstance(value, list | tuple) else [value]
    if not choices:
        return None
    out = []
    for choice in choices:
        if not isinstance(choice, str) or not choice.strip():
            raise InvalidError(
                f"gpu={value!r} is not understood; use a type like \"H100\", "
                "\"A100-80GB:2\", \"any\", or a list of those."
            )
        kind, _, count = choice.strip().rstrip("!").partition(":")
        if count and (not count.isdigit() or int(count) < 1):
            raise InvalidError(f"gpu={choice!r}: the count after ':' must be a positive integer.")
        kind = kind.strip().upper()
        if kind not in KNOWN_TYPES:
            raise InvalidError(f"gpu={choice!r}: unknown GPU type {kind!r}; use one of "
                               f"{', '.join(KNOWN_TYPES[:-1])} or \"any\".")
        out.append({"type": kind, "count": int(count or 1)})
    return out


def isolation_spec(value: Any) -> str | None:
    if value is None:
        return None
    if value not in ISOLATION_MODES:
        raise InvalidError(
            f"isolation={value!r} is not one of {', '.join(ISOLATION_MODES)}; pick one of those."
        )
    return str(value)
