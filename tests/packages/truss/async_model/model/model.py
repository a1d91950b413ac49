"""Like truss's test_async_truss: async load, preprocess, predict and postprocess."""

import asyncio


class Model:
    def __init__(self):
        self.ready_at = None

    async def load(self):
        await asyncio.sleep(0.1)
        self.ready_at = "loaded"

    async def preprocess(self, model_input):
        return {"values": [v + 1 for v in model_input["values"]]}

    async def predict(self, model_input):
        await asyncio.sleep(0.01)
        return {"sum": sum(model_input["values"])}

    async def postprocess(self, model_output):
        return {**model_output, "state": self.ready_at}
