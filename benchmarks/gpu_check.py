"""The GPU check, one command: training and sampling throughput against diffusers with the GPU settings
(bf16-mixed, torch.compile, channels_last, fused AdamW; the loop never waits for the device) and without
them, then the CPU recipe trained for 3 minutes with trainer=gpu and its FID. About 8 minutes on one GPU.

    bash benchmarks/gpu_check.sh          # on a machine with a GPU
    bash benchmarks/gpu_check.sh --cpu    # the same steps at tiny sizes on a CPU (what CI runs)
    bash benchmarks/gpu_check.sh --cpu dataset.val_size=32 …   # Hydra overrides for every step after the flag

Every step runs in this one process (one interpreter start and one import of torch, Lightning and diffusers
instead of five), the compiler's caches reset before each. Writes each step's output to <step>.log and its
JSON to <step>.json, and all of them, with the GPU's name, to gpu_check.json, in $OUT, else ./gpu_check/.
"""

import argparse
import contextlib
import json
import os
import runpy
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHOWN = ("ratio", "images_per_s_ours", "train_images_per_s_ours")  # what the one-line summary shows per step


def steps(cpu: bool, overrides: list[str], out: Path) -> list[tuple[str, str, list[str]]]:
    """(name, benchmark script, its arguments) of each step: tiny sizes with `cpu`, else the GPU's."""
    if cpu:
        model, gpu = "unet_tiny", ["trainer=cpu", *overrides]
        plain = ["trainer=cpu", "speed.channels_last=false", "optimizer.fused=false", *overrides]
        train, sample = ["--batch", "8", "--steps", "1", "--rounds", "1"], ["--n", "8", "--steps", "2", "--batches",
                                                                          "1", "--rounds", "1", "--batch", "8"]
        recipe = ["--max-steps", "4", "--n", "20", "--real-n", "32"]
    else:
        model, gpu = "unet_small", ["trainer=gpu", *overrides]
        plain = ["trainer=gpu", "trainer.precision=32-true", "speed.compile=false", "speed.channels_last=false",
                 "optimizer.fused=false", *overrides]
        train, sample = ["--batch", "256", "--steps", "20", "--rounds", "3"], ["--n", "10000", "--steps", "50",
                                                                             "--batches", "2", "--rounds", "3"]
        recipe = ["--minutes", "3", "--n", "1000"]
    return [
        ("train_gpu_settings", "bench_train.py", ["--model", model, *train, *gpu]),
        ("train_plain", "bench_train.py", ["--model", model, *train, *plain]),
        ("sample_gpu_settings", "bench_sample.py", ["--model", model, *sample, *gpu]),
        ("sample_plain", "bench_sample.py", ["--model", model, *sample, "--compile", "false", *plain]),
        ("recipe", "bench_quality.py", ["--sides", "ours", *recipe, "--out", str(out / "recipe"), *gpu]),
    ]


def run_step(out: Path, name: str, script: str, args: list[str]) -> dict:
    """Run benchmarks/`script` as its command line would, its stdout into <name>.log; its last line, a JSON
    object, is the step's result."""
    print(f"[gpu_check] {name}: python benchmarks/{script} {' '.join(args)}", file=sys.stderr, flush=True)
    torch._dynamo.reset()  # each step compiles its own networks, as in a process of its own
    log = out / f"{name}.log"
    argv = sys.argv
    try:
        with log.open("w") as stream, contextlib.redirect_stdout(stream):
            sys.argv = [str(HERE / script), *args]
            runpy.run_path(str(HERE / script), run_name="__main__")
    finally:
        sys.argv = argv
    result = json.loads(log.read_text().strip().splitlines()[-1])
    (out / f"{name}.json").write_text(json.dumps(result))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def gpu() -> dict | None:
    """The GPU's name and memory, and the CUDA that torch was built with; None on a CPU."""
    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return {"name": properties.name, "memory_gib": round(properties.total_memory / 2**30, 1),
            "torch": torch.__version__, "cuda": torch.version.cuda}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the same steps at tiny sizes on a CPU (what CI runs)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the project's config, for every step")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT") or "gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    summary = {name: run_step(out, name, script, args) for name, script, args in steps(args.cpu, args.overrides, out)}
    (out / "gpu_check.json").write_text(json.dumps({**summary, "gpu": gpu()}, indent=1))
    shown = {name: {k: v for k, v in result.items() if k in SHOWN} for name, result in summary.items()}
    shown["recipe"] |= {"fid": summary["recipe"]["ours"]["fid"], "fid_ci": summary["recipe"]["ours"]["fid_ci"]}
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
