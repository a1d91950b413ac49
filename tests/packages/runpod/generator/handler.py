"""A sync generator handler: its outputs are streamed, its result is not their list."""

import runpod


def handler(job):
    for i in range(int(job["input"].get("n", 3))):
        yield {"i": i, "square": i * i}


runpod.serverless.start({"handler": handler})
