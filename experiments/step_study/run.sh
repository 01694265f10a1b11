#!/usr/bin/env bash
# The sampling-step study (RESULTS.md), in stages, each resumable (from the repository root; MNIST and
# Fashion-MNIST under DIFFUSION_LAB_DATA or ./data):
#   bash experiments/step_study/run.sh train            # the 8 models: one -m sweep of experiment=step_study
#   bash experiments/step_study/run.sh evaluate MODEL   # one model of models/ (mnist_linear, ...): its grid
#   bash experiments/step_study/run.sh summarize        # tables.md, the figures and report.html from results/
# evaluate needs only models/ (committed): the study's evaluation runs on a fresh clone without training.
set -euo pipefail
here=experiments/step_study
out=${OUT:-outputs/step_study}  # the training sweep's run directories
stage=${1:?usage: run.sh train | evaluate MODEL | summarize}

name_of() {  # a sweep job's folder 3-fashion_mnist,learned -> fashion_mnist_learned
  local job; job=$(basename "$1"); job=${job#*-}; echo "${job//,/_}"
}

if [[ $stage == train ]]; then
  # One sweep, one W&B group (offline without an account: `wandb sync $out/*/wandb/offline-run-*` uploads it).
  [[ -d $out ]] || python train.py experiment=step_study hydra.sweep.dir="$out"
  for run in "$out"/*/; do  # the EMA weights with their config (a tenth of the checkpoint), the run's summary
    name=$(name_of "$run")
    python -c "from diffusion_lab.checkpoints import export_weights; export_weights('$run', '$here/models/$name')"
    cp "$run/summary.json" "$run/csv/metrics.csv" "$here/models/$name/"
    mkdir -p "$here/models/$name/samples" && cp "$run"/samples/final_*.png "$here/models/$name/samples/"
  done
fi
