"""Model servers for the model gateway's tests: tinylm engines (tests/engines/tinylm.py) run as
web_server processes, the way a Modal app runs `vllm serve`, each declared with @model_api."""

import subprocess
import sys

from engines import tinylm

import firebox

app = firebox.App("test-model-api")
adapters = firebox.Volume.from_name("test-model-adapters", create_if_missing=True)


def engine(name: str, port: int, delay_ms: float = 0.0, *extra: str) -> None:
    subprocess.Popen([sys.executable, tinylm.__file__, "serve", "--port", str(port),
                      "--served-model-name", name, "--token-delay-ms", str(delay_ms), *extra])


@app.function(volumes={"/adapters": adapters}, min_containers=2, max_containers=2,
              scaledown_window=60)
@firebox.concurrent(max_inputs=4)
@firebox.model_api(models=["tiny-chat"], adapters="/adapters")
@firebox.web_server(8000, startup_timeout=60)
def chat_engine():
    engine("tiny-chat", 8000)


@app.function(max_containers=3, scaledown_window=60)
@firebox.concurrent(max_inputs=2)
@firebox.model_api(models="tiny-embed", routing="least_loaded")
@firebox.web_server(8001, startup_timeout=60)
def embed_engine():
    engine("tiny-embed", 8001, delay_ms=150)


@app.function(scaledown_window=60)
@firebox.model_api(models="tiny-uncounted")
@firebox.web_server(8002, startup_timeout=60)
def engine_without_usage():
    engine("tiny-uncounted", 8002, 0.0, "--no-usage")


# Under gVisor the control plane does not reach the engine's loopback: requests take the
# container's channel, and its runtime loads adapters.
@app.function(isolation="gvisor", volumes={"/adapters": adapters}, scaledown_window=60)
@firebox.concurrent(max_inputs=4)
@firebox.model_api(models="tiny-gvisor", adapters="/adapters")
@firebox.web_server(8003, startup_timeout=90)
def engine_in_gvisor():
    engine("tiny-gvisor", 8003)
