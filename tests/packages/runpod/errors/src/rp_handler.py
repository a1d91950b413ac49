"""Every way a job goes wrong, as runpod-workers/mock-worker exercises them, laid out like the
worker template (src/rp_handler.py, builder/requirements.txt)."""

import os
import time

import runpod


def handler(job):
    mode = job["input"].get("mode")
    if mode == "error":
        return {"error": "no prompt was given"}
    if mode == "raise":
        raise ValueError("the model is not loaded")
    if mode == "crash":
        os._exit(3)
    if mode == "progress":
        runpod.serverless.progress_update(job, "half way")
        time.sleep(2)
        return "done"
    if mode == "slow":
        time.sleep(float(job["input"].get("seconds", 30)))
    return {"mode": mode, "pid": os.getpid()}


runpod.serverless.start({"handler": handler})
