#!/usr/bin/env bash
# Classifier-free guidance on MNIST (RESULTS.md): train a class-conditional model, then measure FID and the
# classifier's accuracy on the requested class against the guidance scale, and draw class grids.
# Usage, from the repository root (MNIST under DIFFUSION_LAB_DATA or ./data): bash experiments/guidance/run.sh
set -euo pipefail
here=experiments/guidance
python train.py experiment=guidance ~callbacks.figures logger=csv hydra.run.dir=$here/run
python evaluate.py ckpt=$here/run samplers=[ddim] steps=[50] guidance_scales=[0,0.5,1,2,4] n=300 wandb=false
for w in 0 2; do
  python sample.py ckpt=$here/run sampler=ddim steps=50 n=100 guidance_scale=$w progress=false out_dir=$here/grid-w$w
done
