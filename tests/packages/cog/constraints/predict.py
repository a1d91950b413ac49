"""Every kind of input Cog validates: bounds, lengths, a pattern, choices, defaults, lists,
an optional input and a secret."""

from typing import Optional

from cog import BasePredictor, Input, Secret


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="What to say", min_length=2, max_length=20),
        steps: int = Input(description="How many times", default=2, ge=1, le=5),
        scale: float = Input(default=0.5, ge=0.0, le=1.0),
        loud: bool = Input(default=False),
        color: str = Input(default="red", choices=["red", "green", "blue"]),
        code: str = Input(default="AB12", regex=r"^[A-Z]{2}[0-9]{2}$"),
        weights: list[int] = Input(default=[1, 2]),
        note: Optional[str] = Input(default=None),
        api_key: Secret = Input(description="A key that never shows", default=None),
    ) -> dict:
        text = " ".join([prompt.upper() if loud else prompt] * steps)
        return {"text": text, "scale": scale, "color": color, "code": code,
                "weights": weights, "note": note,
                "key_length": len(api_key.get_secret_value()) if api_key else 0}
