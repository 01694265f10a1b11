"""Sampling a trained run: rebuild the model from its checkpoint, draw n images, write them beside the run."""

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from lightning_fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from diffusion_lab.diffusion import Denoiser
from diffusion_lab.errors import ConfigError
from diffusion_lab.rng import seeded_generator
from diffusion_lab.runs import fresh_dir, load_run, write_json_atomic
from diffusion_lab.sampling import Sampler
from diffusion_lab.viz import grid_layout

log = logging.getLogger(__name__)


def generate(denoiser: Denoiser, sampler: Sampler, n: int, image_shape, generator: torch.Generator, batch_size: int,
             device, progress: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images as uint8 (n, C, H, W), drawn in batches from one noise stream; image i of class `labels[i]`
    when given."""
    batches = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        noise = torch.randn(b, *image_shape, generator=generator, device=device)
        model = denoiser if labels is None else denoiser.for_labels(labels[start:start + b])
        x = sampler.sample(model, noise, generator, progress=progress)
        batches.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(batches)


def requested_classes(cls: int | None, num_classes: int | None, n: int) -> torch.Tensor | None:
    """The class of each of n images: all `cls`, or i % num_classes for a conditional model (a class grid);
    None for an unconditional model."""
    if not num_classes:
        if cls is not None:
            raise ConfigError(f"class={cls}: this run is unconditional; allowed: class=null (or a run trained "
                              "with model.num_classes=10)")
        return None
    if cls is not None and not 0 <= cls < num_classes:
        raise ConfigError(f"class={cls}: allowed values are 0..{num_classes - 1} or null")
    return torch.full((n,), cls) if cls is not None else torch.arange(n) % num_classes


def save_grid(images: torch.Tensor, labels: torch.Tensor | None, path: Path, most: int = 256) -> None:
    """The first `most` images: one row per class for a class grid (labels i % C), else a square grid."""
    images, nrow = grid_layout(images[:most], labels[:most] if labels is not None else None, blank=255)
    save_image(images.float() / 255, path, nrow=nrow, padding=2, pad_value=1.0)


def sample_run(cfg: DictConfig) -> Path | None:
    """Sample `cfg.n` images from the run at `cfg.ckpt` (checked by `validation.check_sample_config`); returns the
    output folder (on rank 0)."""
    fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices,
                    strategy="ddp" if cfg.devices not in (1, "1") else "auto")
    fabric.launch()
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema, compile=cfg.compile)
    T = module.diffusion.num_timesteps
    if cfg.steps is not None and not 1 <= cfg.steps <= T:
        raise ConfigError(f"steps={cfg.steps}: allowed values are 1..{T} (the run's T)")
    module = module.to(fabric.device)
    sampler = instantiate(cfg.sampler)(module.diffusion, steps=cfg.steps)
    per_rank = math.ceil(cfg.n / fabric.world_size)
    labels = requested_classes(cfg.get("class"), module.num_classes, per_rank * fabric.world_size)
    mine = labels[fabric.global_rank * per_rank:][:per_rank].to(fabric.device) if labels is not None else None
    start = time.perf_counter()
    images = generate(module.denoiser(mine, cfg.guidance_scale), sampler, per_rank, module.image_shape,
                      seeded_generator(cfg.seed, fabric.global_rank, device=fabric.device), cfg.batch_size, fabric.device,
                      progress=cfg.progress and fabric.is_global_zero, labels=mine)
    images = fabric.all_gather(images).reshape(-1, *module.image_shape)[: cfg.n].cpu()
    seconds = time.perf_counter() - start
    if not fabric.is_global_zero:
        return None
    if labels is not None:
        labels = labels[: cfg.n]
    cls = cfg.get("class")
    condition = "" if labels is None else f"-{'classes' if cls is None else f'class{cls}'}-w{cfg.guidance_scale:g}"
    out = fresh_dir(Path(cfg.out_dir) if cfg.out_dir else
                    run_dir / "samples" / f"{sampler.name}-{sampler.num_steps}-n{cfg.n}-seed{cfg.seed}{condition}")
    settings = {
        "ckpt": str(cfg.ckpt), "sampler": OmegaConf.to_container(cfg.sampler), "sampler_name": sampler.name,
        "steps": sampler.num_steps, "timesteps": sampler.timesteps, "n": cfg.n, "seed": cfg.seed,
        "ema": cfg.ema, "world_size": fabric.world_size, "T": T, "run_name": run_cfg.get("run_name"),
        "class": cfg.get("class"), "guidance_scale": cfg.guidance_scale,
        "labels": labels.tolist() if labels is not None else None,
        "seconds": round(seconds, 3), "images_per_second": round(cfg.n / seconds, 2),
    }
    np.savez_compressed(out / "samples.npz", images=images.numpy()[:, 0] if images.shape[1] == 1 else images.numpy(),
                        settings=json.dumps(settings))
    save_grid(images, labels, out / "grid.png")
    write_json_atomic(out / "settings.json", settings)
    log.info("%d images in %.1fs (%.1f images/s) -> %s", cfg.n, seconds, cfg.n / seconds, out)
    return out
