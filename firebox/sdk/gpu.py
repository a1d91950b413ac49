"""The gpu= option: "H100", "A100-80GB:2", "any", or a list of acceptable choices."""

from __future__ import annotations

from typing import Any

from ..exception import InvalidError
from ..wire.spec import ISOLATION_MODES


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
        out.append({"type": kind.strip().upper(), "count": int(count or 1)})
    return out


def isolation_spec(value: Any) -> str | None:
    if value is None:
        return None
    if value not in ISOLATION_MODES:
        raise InvalidError(
            f"isolation={value!r} is not one of {', '.join(ISOLATION_MODES)}; pick one of those."
        )
    return str(value)
