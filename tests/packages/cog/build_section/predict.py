import os
from pathlib import Path

import idna
import tabulate
from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self, weights=None):
        self.weights = Path("/opt/model/weights.txt").read_text().strip()

    def predict(self) -> dict:
        return {"weights": self.weights, "tabulate": tabulate.__version__, "idna": idna.__version__,
                "greeting": os.environ.get("GREETING"),
                "second": Path("/opt/model/second.txt").read_text().strip()}
