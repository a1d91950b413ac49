from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self):
        print("loading the weights")
        raise RuntimeError("the weights file is missing")

    def predict(self, text: str) -> str:
        return text
