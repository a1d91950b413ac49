"""A structured output (cog.BaseModel) and a list output from an Iterator."""

from typing import Optional

from cog import BaseModel, BasePredictor, Input


class Output(BaseModel):
    label: str
    score: float
    alternatives: Optional[list[str]]


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="Text to classify")) -> Output:
        positive = "good" in text
        return Output(label="positive" if positive else "negative",
                      score=0.9 if positive else 0.2, alternatives=["neutral"])
