#!/usr/bin/env bash
# The main job: install, then run the example app on the embedded local server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/firebox run examples/hello.py --n 100
