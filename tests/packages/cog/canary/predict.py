import time

from cog import BasePredictor, ConcatenateIterator, Input


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(description="Words to stream back")
                ) -> ConcatenateIterator[str]:
        for word in prompt.split():
            time.sleep(0.1)
            print(f"token {word}")
            yield word + " "
