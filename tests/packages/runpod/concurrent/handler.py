"""An async handler that takes four jobs at once (concurrency_modifier)."""

import asyncio
import os
import time

import runpod


async def handler(job):
    started = time.time()
    await asyncio.sleep(float(job["input"].get("seconds", 1)))
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


def concurrency(current):
    return 4


runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency})
