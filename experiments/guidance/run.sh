#!/usr/bin/env bash
# Classifier-free guidance on MNIST (RESULTS.md): three class-conditional models, predicting ε with the plain MSE,
# v with the plain MSE, and v with Min-SNR-5 weighting; for each, FID and the classifier's accuracy on the requested
# class against the guidance scale w, with respaced DDPM and DDIM at 50 steps, and class grids at w = 0 and 2.
# From the repository root (MNIST under DIFFUSION_LAB_DATA or ./data):
#   bash experiments/guidance/run.sh             # train, evaluate, summarize (70 minutes on a 2-core CPU)
#   bash experiments/guidance/run.sh train       # or one stage: train | evaluate | summarize
#   bash experiments/guidance/run.sh all v       # or one model (eps | v | v-min_snr)
#   TRAIN="trainer=gpu model=unet_small trainer.max_steps=50000" N=10000 bash experiments/guidance/run.sh   # a GPU
set -euo pipefail
here=experiments/guidance
runs=$here/runs
N=${N:-500}  # generated images per sampler × guidance scale (class i % 10 for image i, the same seeds for each)
TRAIN=${TRAIN:-}  # more train.py overrides for every model
stage=${1:-all}
only=${2:-}  # a model's name: that model only

# name, then overrides; experiment=guidance is unet_tiny, 5,000 optimizer steps of 64 images, p_uncond = 0.1
MODELS=("eps prediction=eps loss_weighting=none" "v prediction=v loss_weighting=none"
        "v-min_snr prediction=v loss_weighting=min_snr")
names=$(for spec in "${MODELS[@]}"; do echo "${spec%% *}"; done | paste -sd' ')
if [[ ! $stage =~ ^(all|train|evaluate|summarize)$ ]]; then
  echo "error: stage '$stage': allowed values are all, train, evaluate, summarize" >&2; exit 2
fi
if [[ -n $only && " $names " != *" $only "* ]]; then
  echo "error: model '$only': allowed values are ${names// /, }" >&2; exit 2
fi

if [[ $stage == all || $stage == train ]]; then
  for spec in "${MODELS[@]}"; do
    read -r name overrides <<<"$spec"
    [[ -z $only || $only == "$name" ]] || continue
    python train.py experiment=guidance $overrides $TRAIN ~callbacks.figures logger=csv hydra.run.dir=$runs/$name
  done
fi

if [[ $stage == all || $stage == evaluate ]]; then
  [[ -n $only ]] || python $here/references.py $here/references.json $N  # N real images scored alike: FID's floor
  for spec in "${MODELS[@]}"; do
    read -r name _ <<<"$spec"
    [[ -z $only || $only == "$name" ]] || continue
    python evaluate.py ckpt=$runs/$name samplers=[ddpm,ddim] steps=[50] guidance_scales=[0,0.5,1,2,4] n=$N \
      batch_size=250 wandb=false
    for sampler in ddpm ddim; do
      for w in 0 2; do  # 10 images per class, one row per class, the same noise in every grid
        python sample.py ckpt=$runs/$name sampler=$sampler steps=50 n=100 guidance_scale=$w progress=false \
          out_dir=$runs/$name/grids/$sampler-50-w$w
      done
    done
  done
fi

if [[ $stage == all || $stage == summarize ]]; then
  python $here/summarize.py $runs $here  # tables.md, guidance.png, per_class.png
fi
