#!/usr/bin/env bash
# The sampling-step study (RESULTS.md): train, evaluate every model at 50/100/200/T steps, report.
# Usage, from the repository root (MNIST and Fashion-MNIST under DIFFUSION_LAB_DATA or ./data):
#   bash experiments/step_study/run.sh            # the 2-core CPU budget of RESULTS.md (about 85 minutes)
#   CPU_BUDGET= N=10000 bash experiments/step_study/run.sh   # the preset as it stands (unet_small, 30 epochs): a GPU
set -euo pipefail
here=experiments/step_study
runs=$here/runs
N=${N:-100}  # generated images per sampler × step count
# On a CPU: the tiny U-Net for 6 minutes per model, at the settings of experiments/cpu_mnist.
CPU_BUDGET=${CPU_BUDGET-"model=unet_tiny trainer=cpu dataset.batch_size=64 optimizer.lr=1e-3 module.warmup_steps=200
  trainer.max_time=00:00:06:00 sampling.n_images=16 ~callbacks.quality ~callbacks.figures logger=csv"}

# data sets × schedules at T=1000 (the preset's sweep), then T=200 for the cosine schedule on MNIST
python train.py experiment=step_study $CPU_BUDGET hydra.sweep.dir=$runs
python train.py experiment=step_study $CPU_BUDGET hydra.sweep.dir=$runs "hydra.sweep.subdir='4-mnist,cosine,T=200'" \
  T=200 hydra.sweeper.params.dataset=mnist hydra.sweeper.params.schedule=cosine

# every model: respaced DDPM, DDIM (η=0) and DPM-Solver++(2M) at 50, 100, 200 steps and the full T, same seeds
for run in "$runs"/*/; do
  T=$(python -c "from omegaconf import OmegaConf; print(OmegaConf.load('$run/.hydra/config.yaml').T)")
  python evaluate.py ckpt="$run" samplers=[ddpm,ddim,dpm_solver] steps="[50,100,200,$T]" n="$N" batch_size=100 wandb=false
done

python report.py "$runs" -o "$here/report.html" --title "The sampling-step study"
python "$here/summarize.py" "$runs" "$here"  # tables.md, fid_vs_steps.png, loss_curves.png, grids.png
