"""A predictor that is a plain function (no class, no setup)."""

from cog import Input


def predict(a: int = Input(description="First"), b: int = Input(default=10)) -> int:
    return a + b
