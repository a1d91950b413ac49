"""Like truss's annotated_types_truss: pydantic input and output, validated."""

import pydantic


class ModelInput(pydantic.BaseModel):
    prompt: str
    max_tokens: int = pydantic.Field(default=4, ge=1, le=16)


class ModelOutput(pydantic.BaseModel):
    words: list[str]
    truncated: bool


class Model:
    def predict(self, request: ModelInput) -> ModelOutput:
        words = request.prompt.split()
        return ModelOutput(words=words[: request.max_tokens],
                           truncated=len(words) > request.max_tokens)
