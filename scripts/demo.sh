#!/usr/bin/env bash
# The main job: builds attnkit and prints a parity and speed table against torch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python benchmarks/demo.py "$@"
