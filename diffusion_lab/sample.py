"""`sample.py`'s work: rebuild a trained run from its checkpoint, draw n images, write them beside the run."""

import json
import logging
import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_lab import rules
from diffusion_lab.checkpoints import load_run
from diffusion_lab.cost import nfe, steps_for_nfe
from diffusion_lab.files import fresh_dir, removed_if_unfinished, write_atomic, write_json_atomic
from diffusion_lab.generation import Share, generate, launch, prepare_sampling
from diffusion_lab.images import requested_classes, save_grid

log = logging.getLogger(__name__)


def sample_run(cfg: DictConfig) -> Path | None:
    """Sample `cfg.n` images from the run at `cfg.ckpt` (checked by `config_checks.check_sample_config`); returns
    the output folder (on rank 0)."""
    fabric = launch(cfg.accelerator, cfg.devices)
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema)
    T = module.diffusion.num_timesteps
    module = module.to(fabric.device)
    share = Share(cfg.n, fabric.global_rank, fabric.world_size)
    labels = requested_classes(cfg.get("class"), module.num_classes, share.total)
    mine = share.mine(labels, fabric.device)
    denoiser = module.denoiser(mine, cfg.guidance_scale)
    factory, steps = instantiate(cfg.sampler), cfg.steps
    if cfg.nfe is not None:
        steps = steps_for_nfe(factory, module.diffusion, cfg.nfe, denoiser.evaluations_per_call)
    elif steps is not None:
        rules.check_step_counts("steps", steps, T)
    sampler = factory(module.diffusion, steps=steps)
    batch_size, compiled = prepare_sampling(module.net, share.per_rank, share.per_rank * nfe(sampler, denoiser),
                                            fabric.device, cfg.batch_size, cfg.compile)
    start = time.perf_counter()
    images = generate(denoiser, sampler, share.per_rank, module.image_shape,
                      cfg.seed, batch_size, fabric.device, progress=cfg.progress and fabric.is_global_zero,
                      labels=mine, first=share.first, full_batches=compiled)
    images = share.gather(images, fabric.all_gather).cpu()
    seconds = time.perf_counter() - start
    if not fabric.is_global_zero:
        return None
    if labels is not None:
        labels = labels[: cfg.n]
    cls = cfg.get("class")
    condition = "" if labels is None else f"-{'classes' if cls is None else f'class{cls}'}-w{cfg.guidance_scale:g}"
    out = fresh_dir(Path(cfg.out_dir) if cfg.out_dir else
                    run_dir / "samples" / f"{sampler.label}-{sampler.num_steps}-n{cfg.n}-seed{cfg.seed}{condition}")
    settings = {
        "ckpt": str(cfg.ckpt), "sampler": OmegaConf.to_container(cfg.sampler), "sampler_name": sampler.label,
        "steps": sampler.num_steps, "nfe": nfe(sampler, denoiser),
        "spacing": sampler.spacing, "timesteps": sampler.timesteps, "n": cfg.n, "seed": cfg.seed,
        "ema": cfg.ema, "world_size": fabric.world_size, "T": T, "run_name": run_cfg.get("run_name"),
        "class": cfg.get("class"), "guidance_scale": cfg.guidance_scale,
        "labels": labels.tolist() if labels is not None else None,
        "seconds": round(seconds, 3), "images_per_second": round(cfg.n / seconds, 2),
        "batch_size": batch_size, "compiled": compiled,
    }
    pixels = images.numpy()[:, 0] if images.shape[1] == 1 else images.numpy()
    with removed_if_unfinished(out):
        write_atomic(out / "samples.npz", lambda f: np.savez_compressed(f, images=pixels, settings=json.dumps(settings)),
                     binary=True)
        save_grid(images, labels, out / "grid.png")
        write_json_atomic(out / "settings.json", settings)
    log.info("%d images in %.1fs (%.1f images/s) -> %s", cfg.n, seconds, cfg.n / seconds, out)
    return out
