"""An async generator handler whose stream is also its result (return_aggregate_stream), as a
token-streaming LLM worker is written."""

import asyncio

import runpod


async def handler(job):
    for word in job["input"]["prompt"].split():
        await asyncio.sleep(0.05)
        yield word.upper()


runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
