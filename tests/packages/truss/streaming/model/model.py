"""Like truss's test_streaming_truss: predict returns a generator of text chunks."""

import time


class Model:
    def predict(self, model_input):
        def tokens():
            for i in range(int(model_input.get("n", 3))):
                time.sleep(0.05)
                yield f"chunk{i} "

        return tokens()
