"""Like truss's test_streaming_async_generator_truss: predict is an async generator."""

import asyncio


class Model:
    async def predict(self, model_input):
        for word in model_input["prompt"].split():
            await asyncio.sleep(0.02)
            yield word.upper() + "\n"
