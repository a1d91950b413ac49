"""The model servers benchmarks/gateway.py measures: tinylm engines (tests/engines/tinylm.py)
as web_server processes declared with @model_api, the way a user serves vLLM."""

import subprocess
import sys
from pathlib import Path

import firebox

ENGINE = Path(__file__).resolve().parent.parent / "tests" / "engines" / "tinylm.py"
app = firebox.App("bench-gateway")
image = firebox.Image.debian_slim().add_local_file(ENGINE, "/opt/tinylm.py", copy=True)


def engine(name: str) -> None:
    subprocess.Popen([sys.executable, "/opt/tinylm.py", "serve", "--port", "8000",
                      "--served-model-name", name])


# What a user writes: one replica, its engine's concurrency.
@app.function(image=image, min_containers=1, max_containers=1, scaledown_window=300)
@firebox.concurrent(max_inputs=64)
@firebox.model_api(models="bench")
@firebox.web_server(8000, startup_timeout=60)
def single():
    engine("bench")


# The routing comparison: three replicas each, prefix-aware vs least-loaded.
@app.function(image=image, min_containers=3, max_containers=3, scaledown_window=300)
@firebox.concurrent(max_inputs=8)
@firebox.model_api(models="by-prefix")
@firebox.web_server(8000, startup_timeout=60)
def by_prefix():
    engine("by-prefix")


@app.function(image=image, min_containers=3, max_containers=3, scaledown_window=300)
@firebox.concurrent(max_inputs=8)
@firebox.model_api(models="spread", routing="least_loaded")
@firebox.web_server(8000, startup_timeout=60)
def spread():
    engine("spread")
