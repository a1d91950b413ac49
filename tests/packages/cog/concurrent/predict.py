"""An async predictor that runs up to three predictions at once (concurrency.max)."""

import asyncio
import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    async def setup(self):
        self.pid = os.getpid()

    async def predict(self, seconds: float = Input(default=1.0)) -> dict:
        started = time.time()
        await asyncio.sleep(seconds)
        return {"pid": self.pid, "started": started, "ended": time.time()}
