"""Quality per CPU-minute: diffusers' unconditional training example against this project's CPU recipe, each
trained for the same wall-clock minutes on this machine, one after the other, then sampled and scored alike.

    python benchmarks/bench_quality.py --minutes 12 [--dataset mnist] [--n 1000] [--out DIR] [overrides ...]
    python benchmarks/bench_quality.py --sides ours --max-steps 800 prediction=eps   # one ablation row

(a) diffusers: examples/unconditional_image_generation/train_unconditional.py at its defaults on the data set:
UNet2DModel (32, 64, 64) with 1 layer per block (attention at 7×7), linear β, ε-prediction, AdamW (lr 2e-4,
β = (0.95, 0.999), weight decay 1e-6), 500 warm-up steps then cosine over 100 epochs, batch 128, gradient
clipping at 1, diffusers' EMAModel (warm-up, power 3/4, max decay 0.9999); sampled with DDIMPipeline, 50
trailing steps. (b) ours: `train.py experiment=cpu_<dataset>` with `trainer.max_time`, sampled with the
recipe's sampler at its `quality.steps`; the recipe is class-conditional, so image i asks for class i mod 10,
unguided (no extra network evaluation), and the report adds its class accuracy. The sampling after training
(grids, evaluation, figures) is off on both sides, so the minutes are training alone. Both sides' n images are
scored in the data set's classifier feature space against 10,000 test images (`--real-n`), with 95 % bootstrap
intervals and the real-data floor at that n. Prints one JSON object; `--out` keeps each side's run, its grid
(64 samples, or 10 × 10 by class) and the JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from bench_train import diffusers_step
from timing import machine
from diffusion_lab.checkpoints import export_weights, load_run
from diffusion_lab.data import load_split
from diffusion_lab.generation import generate, sampling_batch_size
from diffusion_lab.images import requested_classes, save_grid
from diffusion_lab.metrics.quality import QualityMetrics
from diffusion_lab.sampling import Sampler

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DIFFUSERS_WIDTHS = (32, 64, 64)
DIFFUSERS_STEPS = 50


def diffusers_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=DIFFUSERS_WIDTHS,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def train_diffusers(dataset: str, data_dir: str, seconds: float, max_steps: int | None, seed: int) -> dict:
    """The example's loop until `seconds` have passed (or `max_steps`); returns its EMA network and counts."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    images, _ = load_split(dataset, data_dir, train=True, download=False)  # uint8, as torchvision's data set holds it
    data = TensorDataset(images)
    loader = DataLoader(data, batch_size=128, shuffle=True, num_workers=0, drop_last=False)
    unet = diffusers_unet().to(DEVICE)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=500,
                                 num_training_steps=len(loader) * 100)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    steps, start = 0, time.perf_counter()
    while True:
        for (batch,) in loader:
            clean = batch.to(DEVICE).float() / 127.5 - 1  # ToTensor + Normalize([0.5], [0.5])
            loss = diffusers_step(unet, scheduler, optimizer, lr_scheduler, clean)
            ema.step(unet.parameters())
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds or (max_steps and steps >= max_steps):
                ema.copy_to(unet.parameters())
                return {"net": unet.eval(), "optimizer_steps": steps, "train_seconds": elapsed,
                        "train_images_per_s": steps * 128 / elapsed, "final_loss": loss.item()}


def sample_diffusers(unet, n: int, seed: int, batch: int = 100) -> tuple[torch.Tensor, float]:
    """n uint8 images from DDIMPipeline at 50 trailing steps, η = 0 (its defaults otherwise: clip_sample)."""
    from diffusers import DDIMPipeline, DDIMScheduler

    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                                               timestep_spacing="trailing"))
    pipeline.set_progress_bar_config(disable=True)
    generator, images, start = torch.Generator().manual_seed(seed), [], time.perf_counter()
    for first in range(0, n, batch):
        out = pipeline(batch_size=min(batch, n - first), num_inference_steps=DIFFUSERS_STEPS, eta=0.0,
                       generator=generator, output_type="np").images  # (b, H, W, 1) in [0, 1]
        images.append(torch.from_numpy(out).permute(0, 3, 1, 2).mul(255).round().to(torch.uint8))
        print(f"[bench_quality] diffusers: {first + len(out)}/{n} images", file=sys.stderr, flush=True)
    return torch.cat(images), time.perf_counter() - start


def train_ours(run_dir: Path, dataset: str, seconds: float, max_steps: int | None, overrides: list[str]) -> dict:
    """`train.py experiment=cpu_<dataset>` for `seconds` (or `max_steps`), nothing drawn or scored afterwards."""
    budget = (["trainer.max_time=null", f"trainer.max_steps={max_steps}", "trainer.max_epochs=-1"] if max_steps else
              [f"trainer.max_time=00:{int(seconds) // 3600:02d}:{int(seconds) % 3600 // 60:02d}:{int(seconds) % 60:02d}"])
    command = [sys.executable, "train.py", f"experiment=cpu_{dataset}", *budget, "logger=none",
               "~callbacks.quality", "~callbacks.figures", "~callbacks.sample_grid", f"hydra.run.dir={run_dir}",
               *overrides]
    print("[bench_quality] ours:", " ".join(command[1:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"optimizer_steps": summary["optimizer_steps"], "train_seconds": summary["train_seconds"],
            "wall_seconds": round(time.perf_counter() - start, 1),
            "train_images_per_s": summary["train_images_per_second"], "final_val_loss": summary["final_val_loss"],
            "command": " ".join(command[1:])}


def sample_ours(run_dir: Path, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, Sampler, float]:
    """n uint8 images from the run's EMA weights with the recipe's sampler at its `quality.steps`, and the class
    each was asked for when the network is class-conditional (image i: class i mod C, unguided, as evaluate.py)."""
    module, cfg, _ = load_run(run_dir)
    module.to(DEVICE)
    sampler = instantiate(cfg.sampler)(module.diffusion, steps=cfg.quality.steps)
    labels = requested_classes(None, module.num_classes, n)
    print(f"[bench_quality] ours: sampling {n} images with {sampler.label}-{sampler.num_steps}"
          + ("" if labels is None else f", class i mod {module.num_classes} for image i"), file=sys.stderr, flush=True)
    start = time.perf_counter()
    images = generate(module.denoiser(), sampler, n, module.image_shape, seed, sampling_batch_size(n, DEVICE), DEVICE,
                      labels=labels)
    return images.cpu(), labels, sampler, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--max-steps", type=int, default=None, help="a step budget instead of the minutes")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--n", type=int, default=1000, help="images sampled and scored per side")
    parser.add_argument("--real-n", type=int, default=10_000, help="test images of the real statistics")
    parser.add_argument("--sides", nargs="+", default=["diffusers", "ours"], choices=["diffusers", "ours"])
    parser.add_argument("--data-dir", default=os.environ.get("DIFFUSION_LAB_DATA", "./data"))
    parser.add_argument("--out", default=None, help="default: outputs/bench_quality/<dataset>-<minutes>min")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", default=None, help="also write our model's EMA weights and config there")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of our recipe (an ablation)")
    args = parser.parse_args()
    out = Path(args.out or ROOT / "outputs" / "bench_quality" / f"{args.dataset}-{args.minutes:g}min")
    out.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    metrics = QualityMetrics.for_dataset(args.dataset, args.data_dir, args.real_n)  # trains its classifier once if missing
    report = {**machine(), "device": DEVICE, "dataset": args.dataset, "minutes": args.minutes, "max_steps": args.max_steps,
              "n": args.n, "overrides": args.overrides}
    if "diffusers" in args.sides:
        print(f"[bench_quality] training diffusers' example for {args.minutes:g} min", file=sys.stderr, flush=True)
        side = train_diffusers(args.dataset, args.data_dir, seconds, args.max_steps, args.seed)
        images, sample_seconds = sample_diffusers(side.pop("net"), args.n, args.seed)
        save_grid(images[:64], None, out / "diffusers_grid.png")
        scores = metrics.score(*metrics.features(images))
        report["diffusers"] = {**side, "sampler": f"DDIMPipeline-{DIFFUSERS_STEPS} trailing", "nfe": DIFFUSERS_STEPS,
                               "sample_seconds": round(sample_seconds, 1), **pick(scores)}
    if "ours" in args.sides:
        print(f"[bench_quality] training our recipe for {args.minutes:g} min", file=sys.stderr, flush=True)
        side = train_ours(out / "ours", args.dataset, seconds, args.max_steps, args.overrides)
        images, labels, sampler, sample_seconds = sample_ours(out / "ours", args.n, args.seed)
        save_grid(images, labels, out / "ours_grid.png", most=64 if labels is None else 100)  # 10 × 10 by class
        scores = metrics.score(*metrics.features(images), asked=labels)
        if args.export:
            export_weights(out / "ours", args.export)
        report["ours"] = {**side, "sampler": f"{sampler.label}-{sampler.num_steps}", "nfe": sampler.network_evaluations,
                          "sample_seconds": round(sample_seconds, 1), **pick(scores)}
    if "diffusers" in report and "ours" in report:
        ours, theirs = report["ours"], report["diffusers"]
        report["fid_ratio"] = round(ours["fid"] / theirs["fid"], 4)
        report["fid_ratio_bounds"] = [round(ours["fid_ci"][0] / theirs["fid_ci"][1], 4),
                                      round(ours["fid_ci"][1] / theirs["fid_ci"][0], 4)]
    report |= metrics.floor(args.n)  # floor_fid and its interval: n training images against the same test set
    if "ours" in report and "floor_fid" in report:
        report["ours_fid_over_floor"] = round(report["ours"]["fid"] / report["floor_fid"], 2)
    (out / "result.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


def pick(scores: dict) -> dict:
    keys = ("fid", "fid_ci", "fid_inf", "kid_mean", "precision", "recall", "coverage",
            "class_entropy", "class_accuracy")
    return {k: scores[k] for k in keys if k in scores}


if __name__ == "__main__":
    main()
