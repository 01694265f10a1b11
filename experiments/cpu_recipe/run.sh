#!/usr/bin/env bash
# The CPU recipe study: the ablation (one change at a time, each at a step budget equal to 4 minutes of training
# on a 2-core CPU, n = 1,000 samples), the sampler for the chosen model, then bench_quality.py at 12 minutes on
# MNIST and Fashion-MNIST, whose models are shipped in models/. Resumable: a step whose result.json exists is skipped.
# Usage: bash experiments/cpu_recipe/run.sh   (from the repository root; data under DIFFUSION_LAB_DATA or ./data)
# Nothing else should run on the machine during step 3: it trains against the clock.
set -euo pipefail
here=experiments/cpu_recipe
out=${OUT:-outputs/cpu_recipe}
mkdir -p "$out"
# Optimizer steps in 4 minutes at each setting's training throughput on a 2-core AMD EPYC, measured side by side
# in one process (train steps/s: unet_tiny batch 64 4.08, batch 32 7.26, channel_mults [1,2,2] 4.13, width 24 2.58).
ablate() {  # folder, name, steps, [--dataset fashion_mnist] overrides of experiment=cpu_<dataset> ...
  local dir=$1 name=$2 steps=$3; shift 3
  [ -f "$here/$dir/$name.json" ] && return
  mkdir -p "$here/$dir"
  python benchmarks/bench_quality.py --sides ours --max-steps "$steps" --n 1000 --out "$out/$dir/$name" "$@" \
    < /dev/null
  cp "$out/$dir/$name/result.json" "$here/$dir/$name.json"
  cp "$out/$dir/$name/ours_grid.png" "$here/$dir/$name.png"
}
# 1. The ablation, each row one change from an earlier one (RESULTS.md says which). a0 is experiment=cpu_mnist as
#    it was before this study; the recipe now in conf/experiment/cpu_mnist.yaml combines the rows that helped.
old=(loss_weighting=none model.channel_mults=[1,2] module.lr_schedule=constant model.num_classes=null sampler=ddim)
ablate ablation a0_base 978 prediction=eps "${old[@]}" optimizer.lr=1e-3
ablate ablation a1_v 978 prediction=v "${old[@]}" optimizer.lr=1e-3
ablate ablation a2_cosine 978 prediction=v "${old[@]}" optimizer.lr=1e-3 module.lr_schedule=cosine
ablate ablation a3_lr2e-3 978 prediction=v "${old[@]}" optimizer.lr=2e-3 module.lr_schedule=cosine
ablate ablation a4_lr2e-3 978 prediction=v "${old[@]}" optimizer.lr=2e-3
ablate ablation a5_mults122 991 prediction=v "${old[@]}" optimizer.lr=1e-3 model.channel_mults=[1,2,2]
ablate ablation a6_min_snr 978 prediction=v "${old[@]}" optimizer.lr=2e-3 loss_weighting=min_snr
ablate ablation a7_power_ema 978 prediction=v "${old[@]}" optimizer.lr=2e-3 callbacks.ema.gamma=6.94
ablate ablation a8_class 978 prediction=v "${old[@]}" optimizer.lr=2e-3 loss_weighting=min_snr model.num_classes=10
# 2. The sampler for the recipe at 50 NFE, on the best ablation model (a6), the same 500 seeds (paired differences).
if [ ! -f "$here/samplers.json" ]; then
  rm -rf "$out/ablation/a6_min_snr/ours/eval"
  python evaluate.py ckpt="$out/ablation/a6_min_snr/ours" samplers=[ddim,ddpm,dpm_solver,dpm_solver_sde,unipc_3] \
    nfe=[50] n=500 wandb=false
  cp "$out/ablation/a6_min_snr/ours/eval/eval.json" "$here/samplers.json"
fi
# 3. The side-by-side benchmark at 12 minutes, and the shipped models.
for dataset in mnist fashion_mnist; do
  [ -f "$here/bench_quality_$dataset.json" ] && continue
  python benchmarks/bench_quality.py --minutes 12 --dataset "$dataset" --out "$out/bench_$dataset" \
    --export "$here/models/$dataset" < /dev/null | tail -n 1 > "$out/bench_$dataset.json"
  mv "$out/bench_$dataset.json" "$here/bench_quality_$dataset.json"  # only once it is complete
  cp "$out/bench_$dataset/ours_grid.png" "$here/models/$dataset/grid.png"
  cp "$out/bench_$dataset/diffusers_grid.png" "$here/diffusers_grid_$dataset.png"
done
# 4. The samplers at 50 NFE on the two 12-minute models, the benchmark's 1,000 seeds (its FID is the first row's).
declare -A samplers=([mnist]="[dpm_solver_sde,ddpm,ddim,unipc_3]" [fashion_mnist]="[dpm_solver_sde,ddpm]")
for dataset in mnist fashion_mnist; do
  [ -f "$here/samplers_${dataset}_12min.json" ] && continue
  rm -rf "$out/bench_$dataset/ours/eval"
  python evaluate.py ckpt="$out/bench_$dataset/ours" samplers="${samplers[$dataset]}" nfe=[50] n=1000 wandb=false
  cp "$out/bench_$dataset/ours/eval/eval.json" "$here/samplers_${dataset}_12min.json"
done
# 5. Fashion-MNIST at the steps 12 minutes allow each change (steps/s against the recipe's, from the figures
#    above): a wider network (width 24, 0.62x), and batch 32 (1.78x).
ablate fashion width24 1103 --dataset fashion_mnist model.channels=24
ablate fashion batch32 3140 --dataset fashion_mnist dataset.batch_size=32
python $here/summarize.py table "$here"
