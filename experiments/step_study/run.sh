#!/usr/bin/env bash
# The sampling-step study (RESULTS.md): train five models, evaluate each at 50/100/200/T steps with three
# samplers, then the report, tables and figures. From the repository root (MNIST and Fashion-MNIST under
# DIFFUSION_LAB_DATA or ./data):
#   bash experiments/step_study/run.sh                                 # the 2-core CPU budget of RESULTS.md
#   BUDGET="trainer=gpu" N=10000 bash experiments/step_study/run.sh   # the preset as it stands (unet_small, 30 epochs)
set -euo pipefail
here=experiments/step_study
runs=$here/runs
N=${N:-50}  # generated images per sampler × step count (the same seeds for each); 10000 on a GPU
# On a CPU: the tiny U-Net for 1,200 optimizer steps of 64 images per model (about 6 minutes each on 2 cores).
BUDGET=${BUDGET:-"model=unet_tiny trainer=cpu dataset.batch_size=64 optimizer.lr=1e-3 module.warmup_steps=200
  trainer.max_steps=1200 sampling.n_images=16 ~callbacks.quality ~callbacks.figures logger=csv"}

# experiment=step_study is a -m sweep over data sets × schedules; each job is launched on its own here, with a
# readable folder name (the one-line sweep is `python train.py experiment=step_study $BUDGET`).
job() {  # folder, data set, schedule, then other overrides
  python train.py experiment=step_study $BUDGET hydra.sweep.dir=$runs "hydra.sweep.subdir='$1'" \
    hydra.sweeper.params.dataset="$2" hydra.sweeper.params.schedule="$3" "${@:4}"
}
job "0-mnist,linear,T=1000" mnist linear
job "1-mnist,cosine,T=1000" mnist cosine
job "2-fashion_mnist,linear,T=1000" fashion_mnist linear
job "3-fashion_mnist,cosine,T=1000" fashion_mnist cosine
job "4-mnist,cosine,T=200" mnist cosine T=200

# every model: respaced DDPM, DDIM (η=0) and DPM-Solver++(2M) at 50, 100 and 200 steps, and the full chain
# (ancestral DDPM at all T steps), the same seeds for each. FULL_T_ALL=1 adds DDIM and DPM-Solver at T steps
# (the CPU run of RESULTS.md left them out: they would have doubled its evaluation time).
for run in "$runs"/*/; do
  T=$(python -c "from omegaconf import OmegaConf; print(OmegaConf.load('$run/.hydra/config.yaml').T)")
  python evaluate.py ckpt="'$run'" samplers=[ddpm,ddim,dpm_solver] steps=[50,100,200] n="$N" batch_size=50 wandb=false
  if [ "$T" != 200 ]; then
    samplers=$([ "${FULL_T_ALL:-0}" = 1 ] && echo "[ddpm,ddim,dpm_solver]" || echo "[ddpm]")
    python evaluate.py ckpt="'$run'" samplers="$samplers" steps="[$T]" n="$N" batch_size=50 wandb=false
  fi
done

python report.py "$runs" -o "$here/report.html" --title "The sampling-step study"
python "$here/summarize.py" "$runs" "$here"  # tables.md, fid_vs_steps.png, loss_curves.png, grids/
