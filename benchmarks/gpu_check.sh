#!/usr/bin/env bash
# The GPU check, one command: see benchmarks/gpu_check.py for its steps, options and outputs.
#
#   bash benchmarks/gpu_check.sh          # on a machine with a GPU (about 8 minutes)
#   bash benchmarks/gpu_check.sh --cpu    # the same steps at tiny sizes on a CPU (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
