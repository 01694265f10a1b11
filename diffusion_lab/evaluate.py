"""Evaluating a trained run: FID, KID, precision/recall and coverage per sampler and step count."""

import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_lab.cli import CONFIG_DIR
from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.metrics import QualityMetrics, load_feature_net
from diffusion_lab.runs import fresh_dir, load_run, write_json_atomic
from diffusion_lab.sample import generate
from diffusion_lab.sampling import seeded_generator
from diffusion_lab.viz import figure, save

log = logging.getLogger(__name__)
SAMPLER_DIR = Path(CONFIG_DIR) / "sampler"


def sampler_factory(name: str):
    """The partial sampler that conf/sampler/<name>.yaml builds."""
    allowed = sorted(p.stem for p in SAMPLER_DIR.glob("*.yaml"))
    if name not in allowed:
        raise ConfigError(f"samplers: {name!r} is not a sampler; allowed values are {', '.join(allowed)}")
    return instantiate(OmegaConf.load(SAMPLER_DIR / f"{name}.yaml"))


def plot_against_steps(results: list[dict], key: str):
    """One line per sampler: `key` against the number of sampling steps."""
    fig = figure(6, 4)
    ax = fig.subplots()
    for name in dict.fromkeys(r["sampler"] for r in results):
        rows = sorted((r["steps"], r[key]) for r in results if r["sampler"] == name)
        ax.plot(*zip(*rows), marker="o", label=name)
    ax.set(xlabel="sampling steps", ylabel=key, xscale="log", title=f"{key} against sampling steps")
    ax.legend()
    return fig


def evaluate_run(cfg: DictConfig) -> Path:
    """Sample `cfg.n` images per sampler × step count from the same seeds, measure them against the test set,
    and write eval.json and the plots into a new `<run>/eval/` folder; returns it."""
    if cfg.n < 2 or cfg.real_n < 2:
        raise ConfigError(f"n={cfg.n}, real_n={cfg.real_n}: both must be >= 2")
    factories = {name: sampler_factory(name) for name in cfg.samplers}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema)
    module.to(device)
    T = module.diffusion.num_timesteps
    if bad := [k for k in cfg.steps if not 1 <= k <= T]:
        raise ConfigError(f"steps={list(cfg.steps)}: {bad} not in 1..{T} (the run's T)")
    data_dir = cfg.data_dir or run_cfg.dataset.data_dir
    net, record = load_feature_net(run_cfg.dataset.name, data_dir, cfg.feature_net.cache_dir,
                                   epochs=cfg.feature_net.epochs)
    real, _ = load_split(run_cfg.dataset.name, data_dir, train=False, download=False)
    metrics = QualityMetrics(net.to("cpu"), real[: cfg.real_n])
    results = []
    for name, factory in factories.items():
        for steps in cfg.steps:
            sampler = factory(module.diffusion, steps=steps)
            start = time.perf_counter()
            images = generate(module.net, sampler, cfg.n, module.image_shape, seeded_generator(cfg.seed, 0,
                              device=device), cfg.batch_size, device).cpu()
            seconds = time.perf_counter() - start
            results.append({"sampler": name, "steps": steps, **metrics(images), "seconds": round(seconds, 3),
                            "images_per_second": round(cfg.n / seconds, 2)})
            log.info("%-10s %5d steps: FID %8.3f  KID %.4f  precision %.3f  recall %.3f  %.1f s", name, steps,
                     results[-1]["fid"], results[-1]["kid_mean"], results[-1]["precision"], results[-1]["recall"],
                     seconds)
    out = fresh_dir(run_dir / "eval")
    write_json_atomic(out / "eval.json", {
        "ckpt": str(cfg.ckpt), "run_name": run_cfg.get("run_name"), "T": T, "ema": cfg.ema, "seed": cfg.seed,
        "real_n": min(cfg.real_n, len(real)), "feature_net": record,
        "feature_space": f"penultimate layer of a {run_cfg.dataset.name} classifier (not Inception-v3)",
        "samplers": {name: OmegaConf.to_container(OmegaConf.load(SAMPLER_DIR / f"{name}.yaml")) for name in factories},
        "results": results,
    })
    for key in ("fid", "kid_mean"):
        save(plot_against_steps(results, key), out / f"{key}_vs_steps.png")
    log.info("-> %s", out)
    return out
