"""refresh_worker: the worker process is replaced after every job."""

import os

import runpod


def handler(job):
    return {"pid": os.getpid()}


runpod.serverless.start({"handler": handler, "refresh_worker": True})
