import tempfile

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, document: Path = Input(description="A text file"),
                times: int = Input(default=1, ge=1)) -> Path:
        text = Path(document).read_text()
        out = Path(tempfile.mkdtemp()) / "upper.txt"
        out.write_text(text.upper() * times)
        return out
