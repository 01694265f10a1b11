#!/usr/bin/env bash
# Intervals, paired differences, FID's floor and FID∞ for one trained model: a v-prediction unet_tiny trained for
# 15 minutes on a 2-core CPU, 5,000 images each with DDIM-50 and DDIM-200 (image i from the same noise in both),
# scored at n = 200, 1,000 and 5,000 (the first n of each). Results: experiments/uncertainty/RESULTS.md.
# Usage: bash experiments/uncertainty/run.sh   (from the repository root; needs MNIST under DIFFUSION_LAB_DATA or ./data)
set -euo pipefail
here=experiments/uncertainty
work=${WORK:-outputs/uncertainty}
# experiment=cpu_mnist as it was when this study ran (the preset is now the recipe of experiments/cpu_recipe):
python train.py experiment=cpu_mnist prediction=v loss_weighting=none model.channel_mults=[1,2] model.num_classes=null optimizer.lr=1e-3 trainer.max_time=00:00:15:00 sampling.every_n_epochs=5 quality.every_n_epochs=5 quality.final_steps=[] sampling.steps=[50] logger=csv \
  hydra.run.dir="$work/run"
for steps in 50 200; do
  python sample.py ckpt="$work/run" sampler=ddim steps=$steps n=5000 seed=0 batch_size=500 out_dir="$work/draws/ddim-$steps"
done
python $here/score.py "$work/draws" $here/scores.json
