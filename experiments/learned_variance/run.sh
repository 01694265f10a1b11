#!/bin/bash
# Fixed against learned variances on MNIST at the same CPU budget: the CPU recipe (experiment=cpu_mnist: unet_tiny
# with three levels, v-prediction, Min-SNR-5, batch 64, lr 2e-3) for the same 3,000 optimizer steps, once with
# σ² = β̃ and L_simple, once with model.learn_sigma=true and L_hybrid. Then each is scored: respaced DDPM at 25, 50
# and 100 steps with its own variances (ddpm) and with them pinned to β̃ and β (ddpm_fixed_small, _large), n =
# 1,000 on the same seeds, and the variational bound over all 1,000 terms on the first 300 MNIST test images.
# Then the bound of the 50-step chain and the probability-flow ODE likelihood (200 images). About 15 + 15 minutes
# of training and 2 × 25 minutes of evaluation on 2 CPU cores.
#   bash experiments/learned_variance/run.sh [train|evaluate|export|all]   (from the repository root)
set -euo pipefail
out=${OUT:-outputs/learned_variance}
here=experiments/learned_variance
stage=${1:-all}
kinds=(fixed learned)
declare -A extra=([fixed]="" [learned]="model.learn_sigma=true loss=hybrid")

if [[ $stage == train || $stage == all ]]; then
  for kind in "${kinds[@]}"; do
    # shellcheck disable=SC2086
    python train.py experiment=cpu_mnist model.num_classes=null sampler=dpm_solver_sde trainer.max_time=null trainer.max_steps=3000 logger=csv \
      quality.final_steps=[] sampling.steps=[50] hydra.run.dir=$out/$kind ${extra[$kind]}
  done
fi
if [[ $stage == evaluate || $stage == all ]]; then
  for kind in "${kinds[@]}"; do
    python evaluate.py ckpt=$out/$kind samplers=[ddpm,ddpm_fixed_small,ddpm_fixed_large] steps=[25,50,100] n=1000 \
      nll=true nll_n=300 wandb=false
    # the bound of the 50-step respaced chain, and the probability-flow ODE likelihood of 200 dequantized images
    python evaluate.py ckpt=$out/$kind samplers=[] nll=true nll_n=300 nll_steps=50 nll_ode=true nll_ode_n=200 wandb=false
  done
fi
if [[ $stage == export || $stage == all ]]; then  # the EMA weights, summary.json and every eval folder of each
  for kind in "${kinds[@]}"; do
    python -c "from diffusion_lab.checkpoints import export_weights; export_weights('$out/$kind', '$here/models/$kind')"
    mkdir -p $here/results/$kind && cp $out/$kind/summary.json $here/results/$kind/
    for folder in $out/$kind/eval*; do
      mkdir -p $here/results/$kind/$(basename $folder) && cp $folder/eval.json $folder/*.png $here/results/$kind/$(basename $folder)/
    done
  done
fi
