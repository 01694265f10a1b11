#!/usr/bin/env bash
# A real small sweep and its report: experiment=quick (unet_tiny, 100 steps at lr 1e-3) on MNIST,
# linear and cosine schedules × T = 200 and 1000, one after another on the CPU (about 18 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
python train.py -m experiment=quick schedule=linear,cosine T=200,1000
sweep=$(ls -d multirun/*/* | tail -1)
python report.py "$sweep" -o experiments/quick_sweep/report.html \
  --title "experiment=quick × schedule × T on MNIST (2-core CPU)"
chromium --headless --no-sandbox --disable-gpu --window-size=1300,2300 \
  --screenshot=experiments/quick_sweep/screenshot.png "file://$PWD/experiments/quick_sweep/report.html"
