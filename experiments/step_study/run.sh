#!/usr/bin/env bash
# The sampling-step study (RESULTS.md), in stages, each resumable (from the repository root; MNIST and
# Fashion-MNIST under DIFFUSION_LAB_DATA or ./data):
#   bash experiments/step_study/run.sh train            # the 8 models: one -m sweep of experiment=step_study
#   bash experiments/step_study/run.sh evaluate MODEL   # one model of models/ (mnist_linear, ...): its grid
#   bash experiments/step_study/run.sh summarize        # tables.md, the figures and report.html from results/
# evaluate reads only models/ (committed), so the study's evaluation runs on a fresh clone without training.
# Each setting leaves results/MODEL/<setting>/eval.json and is skipped once that exists; COMMIT=1 commits each.
# The sizes of RESULTS.md are the defaults; a smaller machine may set them (e.g. N=500 BUDGETS="10 50"):
N=${N:-2000}                    # images per setting of the headline grid
N_MODELS=${N_MODELS:-1000}      # images per setting of the DDPM / DDIM / best-solver comparison of all models
FULL_N=${FULL_N:-$N}            # images of the full-T ancestral chain
PILOT_N=${PILOT_N:-300}         # images per setting of the NFE-10 pilot that picks each solver's step schedule
NLL_N=${NLL_N:-300}             # test images of the variational bound
BUDGETS=${BUDGETS:-"5 10 20 50 100 200"}   # NFE of the headline grid
COMPARISON_BUDGETS=${COMPARISON_BUDGETS:-"10 20 50 100 200"}   # NFE of the comparison of all models
VARIANCE_BUDGETS=${VARIANCE_BUDGETS:-"10 20 50"}   # NFE of the variance ablation, where σ² matters most
set -euo pipefail
here=experiments/step_study
out=${OUT:-outputs/step_study}  # the training sweep's run directories
stage=${1:?usage: run.sh train | evaluate MODEL | summarize}
solvers=(ddpm ddim heun dpm_solver dpm_solver_3m dpm_solver_sde unipc unipc_3)  # euler = ddim, euler_ancestral = ddpm (η = 1)
ode_solvers=(ddim heun dpm_solver dpm_solver_3m unipc unipc_3)
spacings=trailing,linspace,leading,karras,exponential,log_snr
summarize() { python "$here/summarize.py" "$@"; }

name_of() {  # a sweep job's folder 3-fashion_mnist,learned -> fashion_mnist_learned
  local job; job=$(basename "$1"); job=${job#*-}; echo "${job//,/_}"
}

setting() {  # MODEL SETTING evaluate.py-overrides...: one evaluate.py call, its eval.json kept in results/
  local model=$1 name=$2; shift 2
  local dest=$here/results/$model/$name
  [[ -f $dest/eval.json ]] && return 0
  rm -rf "$here/models/$model/eval"
  echo "== $model $name: $*"
  local start=$SECONDS
  # The classifiers whose features score every setting are shipped in feature_nets/: a net retrained on another
  # machine could differ in its last bits, and the study's sessions must all measure in one feature space.
  python evaluate.py ckpt="$here/models/$model" seed=0 resamples=200 wandb=false \
    feature_net.cache_dir="$here/feature_nets" "$@"
  mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$here/models/$model/eval" "$dest"
  # The call's wall clock, start-up, feature net and scoring included: the study's CPU time (RESULTS.md).
  printf '%s\t%s\t%d\t%s\n' "$model" "$name" $((SECONDS - start)) "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" \
    >> "$here/results/wall_seconds.tsv"
  if [[ ${COMMIT:-0} == 1 ]]; then
    git add -A "$dest" "$here/results/wall_seconds.tsv" "$here/feature_nets"
    git commit -q -m "experiments/step_study: $model $name" -- "$dest" "$here/results/wall_seconds.tsv" "$here/feature_nets"
  fi
}

grids() {  # MODEL SOLVER SPACING NFE...: the first 64 seeds of the evaluation as one grid per budget
  local model=$1 solver=$2 spacing=$3; shift 3
  for nfe in "$@"; do
    local dest=$here/results/$model/grids/$solver+$spacing-nfe$nfe
    [[ -f $dest/grid.png ]] && continue
    rm -rf "$dest"
    python sample.py ckpt="$here/models/$model" sampler="$solver" sampler.spacing="$spacing" nfe="$nfe" n=64 \
      seed=0 out_dir="$dest" progress=false
  done
}

if [[ $stage == train ]]; then
  # One sweep, one W&B group (offline without an account: `wandb sync $out/*/wandb/offline-run-*` uploads it).
  [[ -f $out/multirun.yaml ]] || python train.py experiment=step_study hydra.sweep.dir="$out" || true
  # A sweep that was stopped: each job it left unfinished continues where its checkpoint left it, each it never
  # started runs alone, in the folder and W&B group the sweep would have given it.
  jobs=(mnist,linear mnist,cosine mnist,linear_T200 mnist,learned
        fashion_mnist,linear fashion_mnist,cosine fashion_mnist,linear_T200 fashion_mnist,learned)
  for k in "${!jobs[@]}"; do
    run=$out/$k-${jobs[k]}
    if [[ -f $run/summary.json ]]; then continue
    elif [[ -f $run/checkpoints/last.ckpt ]]; then python train.py resume="'$run'"
    else
      python train.py experiment=step_study hydra.mode=RUN dataset="${jobs[k]%,*}" +step_study_model="${jobs[k]#*,}" \
        hydra.run.dir="'$run'" logger.wandb.group="$(basename "$(dirname "$out")")/$(basename "$out")"
    fi
  done
  for run in "$out"/*/; do  # the EMA weights (a tenth of the checkpoint), and what report.py reads of a run
    name=$(name_of "$run") && model=$here/models/$name
    python -c "from diffusion_lab.checkpoints import export_weights; export_weights('$run', '$model')"
    mkdir -p "$model/.hydra" "$model/csv" "$model/samples"
    cp "$run"/.hydra/*.yaml "$model/.hydra/" && cp "$run/csv/metrics.csv" "$model/csv/"
    cp "$run/summary.json" "$model/" && cp "$run"/samples/final_*.png "$model/samples/"
  done
elif [[ $stage == evaluate ]]; then
  model=${2:?usage: run.sh evaluate MODEL (one of $(ls $here/models | tr '\n' ' '))}
  [[ -d $here/models/$model ]] || { echo "error: MODEL=$model: no $here/models/$model; allowed: $(ls $here/models | tr '\n' ' ')" >&2; exit 2; }
  dataset=${model%_linear}; dataset=${dataset%_cosine}; dataset=${dataset%_linear_T200}; dataset=${dataset%_learned}
  headline=${dataset}_linear
  T=$(python -c "from omegaconf import OmegaConf; print(OmegaConf.load('$here/models/$model/.hydra/config.yaml').T)")
  # 1. The bound in bits per dimension over all T terms, first 300 test images (all models).
  setting "$model" nll samplers=[] nll=true nll_n="$NLL_N"
  if [[ $model == "$headline" ]]; then
    # 2. Pilot: every solver on every step schedule at NFE 10, n = 300, one call.
    setting "$model" pilot samplers="[$(IFS=,; echo "${solvers[*]}")]" spacings="[$spacings]" nfe=[10] n="$PILOT_N"
    # 3. The full chain, the reference of every other setting: ancestral DDPM over all T steps, the same seeds.
    setting "$model" "ddpm-full" samplers=[ddpm] steps="[$T]" n="$FULL_N"
    # 4. Every solver on its best schedule (and every ODE solver on Karras's too, in the same call) at each
    #    budget, n = 2,000; the cheap budgets of all solvers first, so that a stopped run has whole columns.
    declare -A schedules
    for solver in "${solvers[@]}"; do
      best=$(summarize best-spacing "$here/results/$model/pilot/eval.json" "$solver")
      schedules[$solver]=$best
      if [[ " ${ode_solvers[*]} " == *" $solver "* && $best != karras ]]; then schedules[$solver]=$best,karras; fi
    done
    for nfe in $BUDGETS; do
      for solver in "${solvers[@]}"; do
        setting "$model" "$solver/nfe$nfe" samplers="[$solver]" spacings="[${schedules[$solver]}]" nfe="[$nfe]" n="$N"
      done
    done
  fi
  # 5. Respaced DDPM, DDIM and the headline's best higher-order solver at NFE 10-200, n = 1,000 (on the headline
  #    too: the other models pair with it at this n).
  pilot=$here/results/$headline/pilot/eval.json
  ddpm_spacing=$(summarize best-spacing "$pilot" ddpm)
  for pair in "ddpm $ddpm_spacing" "ddim $(summarize best-spacing "$pilot" ddim)" \
              "$(summarize best-solver "$here/results/$headline")"; do
    read -r solver spacing <<< "$pair"
    setting "$model" "n$N_MODELS/$solver" samplers="[$solver]" spacings="[$spacing]" nfe="[${COMPARISON_BUDGETS// /,}]" \
      n="$N_MODELS"
    grids "$model" "$solver" "$spacing" $COMPARISON_BUDGETS
  done
  # 6. The variance ablation: respaced DDPM with σ² pinned to β̃' (ddpm_fixed_small) and to β' (ddpm_fixed_large)
  #    whatever the network learned, on the learned-variance model and (β' only: β̃' is its default) the headline,
  #    on the comparison's seeds, so that each pairs with the same network's default variance.
  pinned=()
  if [[ $model == *_learned ]]; then pinned=(ddpm_fixed_small ddpm_fixed_large)
  elif [[ $model == "$headline" ]]; then pinned=(ddpm_fixed_large); fi
  for solver in "${pinned[@]}"; do
    setting "$model" "n$N_MODELS/$solver" samplers="[$solver]" spacings="[$ddpm_spacing]" \
      nfe="[${VARIANCE_BUDGETS// /,}]" n="$N_MODELS"
  done
elif [[ $stage == summarize ]]; then
  summarize report "$here"
  rm -f "$here/report.html" "$here/report.md"  # derived from models/ alone; report.py writes report-1.html beside one
  python report.py "$here/models" -o "$here/report.html" --title "The sampling-step study"
else
  echo "error: stage=$stage; allowed: train, evaluate MODEL, summarize" >&2; exit 2
fi
