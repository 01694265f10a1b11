#!/usr/bin/env bash
# The GPU check, one command: training and sampling throughput against diffusers with the GPU settings
# (bf16-mixed, torch.compile, channels_last, fused AdamW; the loop never waits for the device) and without
# them, then the CPU recipe trained for 3 minutes with trainer=gpu and its FID. About 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh          # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --cpu    # the same steps at tiny sizes on a CPU (what CI runs)
#   bash benchmarks/gpu_check.sh --cpu dataset.val_size=32 …   # Hydra overrides for every step after the flag
#
# Writes gpu_check.json (one object, a key per step) and each step's log to $OUT, else ./gpu_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-./gpu_check}"
mkdir -p "$out"
export DIFFUSION_LAB_DATA="${DIFFUSION_LAB_DATA:-./data}" WANDB_MODE="${WANDB_MODE:-offline}"

if [[ "${1:-}" == "--cpu" ]]; then
  shift
  model=unet_tiny; gpu=(trainer=cpu "$@"); plain=(trainer=cpu speed.channels_last=false optimizer.fused=false "$@")
  train=(--batch 8 --steps 1 --rounds 1); sample=(--n 8 --steps 2 --batches 1 --rounds 1 --batch 8)
  recipe=(--max-steps 4 --n 20 --real-n 32)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" || true
  model=unet_small; gpu=(trainer=gpu); plain=(trainer=gpu trainer.precision=32-true speed.compile=false
                                              speed.channels_last=false optimizer.fused=false)
  train=(--batch 256 --steps 20 --rounds 3); sample=(--n 10000 --steps 50 --batches 2 --rounds 3)
  recipe=(--minutes 3 --n 1000)
fi

step() {  # name, command ...: run it, keep its log, and its last line (a JSON object) for the summary
  local name=$1; shift
  echo "[gpu_check] $name: $*" >&2
  "$@" > "$out/$name.log" 2> "$out/$name.err" || { echo "[gpu_check] $name failed: see $out/$name.err" >&2; exit 1; }
  tail -n 1 "$out/$name.log" > "$out/$name.json"
}
step train_gpu_settings python benchmarks/bench_train.py --model "$model" "${train[@]}" "${gpu[@]}"
step train_plain python benchmarks/bench_train.py --model "$model" "${train[@]}" "${plain[@]}"
step sample_gpu_settings python benchmarks/bench_sample.py --model "$model" "${sample[@]}" "${gpu[@]}"
step sample_plain python benchmarks/bench_sample.py --model "$model" "${sample[@]}" --compile false "${plain[@]}"
step recipe python benchmarks/bench_quality.py --sides ours "${recipe[@]}" --out "$out/recipe" "${gpu[@]}"

python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
names = ["train_gpu_settings", "train_plain", "sample_gpu_settings", "sample_plain", "recipe"]
summary = {name: json.loads((out / f"{name}.json").read_text()) for name in names}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print(json.dumps({name: {k: v for k, v in result.items() if k in ("ratio", "images_per_s_ours",
      "train_images_per_s_ours", "fid", "fid_ci")} | ({"fid": result["ours"]["fid"], "fid_ci": result["ours"]["fid_ci"]}
      if "ours" in result else {}) for name, result in summary.items()}))
PY
