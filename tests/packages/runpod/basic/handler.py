"""A RunPod worker like runpod-workers/worker-template: a sync handler that echoes."""

import os
import time

import runpod


def handler(job):
    job_input = job["input"]
    time.sleep(float(job_input.get("seconds", 0)))
    return {"echo": job_input.get("text"), "job_id": job["id"], "worker": os.getpid(),
            "greeting": os.environ.get("GREETING", "")}


runpod.serverless.start({"handler": handler})
