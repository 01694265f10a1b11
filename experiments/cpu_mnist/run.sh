#!/usr/bin/env bash
# A real DDPM on MNIST in 15 minutes of a 2-core CPU, then samples at 50/20/1000 steps and the figures.
# Usage: bash experiments/cpu_mnist/run.sh   (from the repository root; needs MNIST under DIFFUSION_LAB_DATA or ./data)
set -euo pipefail
here=experiments/cpu_mnist
# experiment=cpu_mnist as it was when this study ran (the preset is now the recipe of experiments/cpu_recipe):
python train.py experiment=cpu_mnist prediction=eps loss_weighting=none model.channel_mults=[1,2] model.num_classes=null optimizer.lr=1e-3 trainer.max_time=00:00:15:00 sampling.every_n_epochs=5 quality.every_n_epochs=5
run=$(ls -d outputs/*/*/ | sort | tail -n 1)
python sample.py ckpt="$run" sampler=ddim steps=50 n=64 seed=0 out_dir="$here/ddim-50"
python sample.py ckpt="$run" sampler=dpm_solver steps=20 n=64 seed=0 out_dir="$here/dpm_solver-20"
python sample.py ckpt="$run" sampler=ddpm steps=null n=64 seed=0 out_dir="$here/ddpm-1000"
python -m diffusion_lab.viz ckpt="$run" out="$here/viz"
cp "$run/summary.json" "$run/csv/metrics.csv" "$run"/samples/final_*.png "$here/"
# The ODE samplers with x̂0 clipped to [-1, 1] at every step (much cleaner for this short-trained model):
python sample.py ckpt="$run" sampler=ddim steps=50 n=64 seed=0 sampler.clip_denoised=true out_dir="$here/ddim-50-clip"
python sample.py ckpt="$run" sampler=dpm_solver steps=20 n=64 seed=0 sampler.clip_denoised=true out_dir="$here/dpm_solver-20-clip"
