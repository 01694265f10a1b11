#!/usr/bin/env bash
# Every solver at equal cost on one trained model: FID (n images, 95 % intervals) at NFE 5, 10, 20, 50, 100 and 200,
# each solver on its best step schedule, chosen by a pilot at NFE 10 over all six schedules.
# The model: the v-prediction unet_tiny of experiments/uncertainty (15 minutes of training on a 2-core CPU).
# Usage: bash experiments/solvers/run.sh <run dir>   (from the repository root; MNIST under DIFFUSION_LAB_DATA or ./data)
# Results: experiments/solvers/RESULTS.md, written by summarize.py from the eval.json files it leaves in <run dir>.
set -euo pipefail
run=${1:?usage: run.sh <run dir>}
here=experiments/solvers
solvers=(ddpm ddim euler euler_ancestral heun dpm_solver dpm_solver_3m dpm_solver_sde unipc unipc_3)
pilot_n=${PILOT_N:-300}
n=${N:-400}
common=(ckpt="$run" resamples=200 wandb=false batch_size=500)
# Each step leaves its eval.json in <run dir>/eval-<name>/; a step whose results are there is not run again.
# 1. The pilot: every solver on every step schedule at NFE 10 (one evaluate call: paired differences among all).
if [ ! -f "$run/eval-pilot/eval.json" ]; then
  rm -rf "$run/eval"
  python evaluate.py "${common[@]}" samplers="[$(IFS=,; echo "${solvers[*]}")]" \
    spacings=[trailing,linspace,leading,karras,exponential,log_snr] nfe=[10] n="$pilot_n"
  mv "$run/eval" "$run/eval-pilot"
fi
# 2. Each solver on the schedule with the lowest pilot FID, at every budget.
for solver in "${solvers[@]}"; do
  [ -f "$run/eval-$solver/eval.json" ] && continue
  rm -rf "$run/eval"
  spacing=$(python $here/summarize.py best-spacing "$run/eval-pilot/eval.json" "$solver")
  python evaluate.py "${common[@]}" samplers="[$solver]" spacings="[$spacing]" nfe=[5,10,20,50,100,200] n="$n"
  mv "$run/eval" "$run/eval-$solver"
done
# 3. One call at NFE 200 for the stochastic samplers against 3M: their paired differences across solvers.
if [ ! -f "$run/eval-paired-200/eval.json" ]; then
  rm -rf "$run/eval"
  python evaluate.py "${common[@]}" samplers=[ddpm,dpm_solver_3m,dpm_solver_sde] nfe=[200] n="$n"
  mv "$run/eval" "$run/eval-paired-200"
fi
python $here/summarize.py report "$run" $here
