"""Like truss's test_concurrency_truss: a sync predict, two at once."""

import os
import time


class Model:
    def predict(self, model_input):
        started = time.time()
        time.sleep(float(model_input.get("seconds", 1)))
        return {"pid": os.getpid(), "started": started, "ended": time.time()}
