"""A worker whose import fails before it starts: a missing dependency."""

import a_module_nobody_installed  # noqa: F401
import runpod


def handler(job):
    return "never"


runpod.serverless.start({"handler": handler})
