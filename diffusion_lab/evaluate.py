"""Evaluating a trained run: FID, KID, precision/recall and coverage per sampler and step count."""

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning_fabric import Fabric
from omegaconf import DictConfig, OmegaConf

from diffusion_lab.cli import CONFIG_DIR
from diffusion_lab.data import load_split
from diffusion_lab.diffusion import Denoiser
from diffusion_lab.errors import ConfigError
from diffusion_lab.metrics import InceptionFID, QualityMetrics, class_accuracy
from diffusion_lab.rng import seeded_generator
from diffusion_lab.runs import fresh_dir, load_run, write_json_atomic
from diffusion_lab.sample import generate, requested_classes
from diffusion_lab.sampling import Sampler
from diffusion_lab.validation import SAMPLERS
from diffusion_lab.viz import figure, save

log = logging.getLogger(__name__)
SAMPLER_DIR = Path(CONFIG_DIR) / "sampler"
COLUMNS = ["sampler", "steps", "fid", "kid_mean", "kid_std", "precision", "recall", "coverage", "class_entropy",
           "classes_below_half", "confidence", "n", "seconds", "images_per_second"]


def sampler_factory(name: str):
    """The partial sampler that conf/sampler/<name>.yaml builds."""
    if name not in SAMPLERS:
        raise ConfigError(f"samplers: {name!r} is not a sampler; allowed values are {', '.join(SAMPLERS)}")
    return instantiate(OmegaConf.load(SAMPLER_DIR / f"{name}.yaml"))


def measure(denoiser: Denoiser, sampler: Sampler, metrics: QualityMetrics, n: int, image_shape, seed: int,
            batch_size: int, device, rank: int = 0, world_size: int = 1,
            all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
            inception: InceptionFID | None = None) -> dict:
    """Sample n images with `sampler` and score them (with `inception` too, when given). With several
    processes, rank r draws ceil(n / world_size) images from its own noise stream (seed, r); the features are
    gathered rank by rank and exactly the first n are scored, on every rank, so no image is counted twice.
    For a class-conditional network, image i is asked for class i % C, with the denoiser's guidance, and the
    result adds how often the data set's classifier assigns the class asked for, overall and per class."""
    per_rank = math.ceil(n / world_size)
    classes = requested_classes(None, getattr(denoiser.net, "num_classes", None), per_rank * world_size)
    start = time.perf_counter()
    images = generate(denoiser, sampler, per_rank, image_shape, seeded_generator(seed, rank, device=device), batch_size,
                      device, labels=classes[rank * per_rank:][:per_rank].to(device) if classes is not None else None)
    features, probabilities = metrics.features(images)
    if world_size > 1:
        features, probabilities = (all_gather(x).reshape(-1, x.shape[-1]) for x in (features, probabilities))
    seconds = time.perf_counter() - start
    result = {"sampler": sampler.name, "steps": sampler.num_steps, **metrics.score(features[:n], probabilities[:n]),
              "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 2)}
    if classes is not None:
        result |= {"guidance_scale": denoiser.guidance_scale,
                   **class_accuracy(probabilities[:n], classes[:n].to(probabilities.device))}
    if inception is not None:
        gathered = all_gather(images).reshape(-1, *image_shape) if world_size > 1 else images
        result["inception_fid"] = inception(gathered[:n])
    return result


def results_table(results: list[dict]) -> str:
    """The results as a fixed-width text table, one row per sampler and step count."""
    header = f"{'sampler':<11}{'steps':>6}{'FID':>10}{'KID':>20}{'prec':>7}{'recall':>7}{'cover':>7}{'entropy':>8}" \
             f"{'conf':>6}{'s/1k img':>10}"
    header += f"{'w':>6}{'class acc':>10}" if "class_accuracy" in results[0] else ""
    rows = [f"{r['sampler']:<11}{r['steps']:>6}{r['fid']:>10.4g}{r['kid_mean']:>11.4g} ±{r['kid_std']:<7.2g}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['coverage']:>7.3f}{r['class_entropy']:>8.3f}"
            f"{r['confidence']:>6.3f}"
            f"{1000 * r['seconds'] / r['n']:>10.1f}"
            + (f"{r['guidance_scale']:>6g}{r['class_accuracy']:>10.3f}" if "class_accuracy" in r else "") for r in results]
    return "\n".join([header, *rows])


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


def plot_against_guidance(results: list[dict], key: str):
    """One line per sampler and step count: `key` against the guidance scale w."""
    fig = figure(6, 4)
    ax = fig.subplots()
    for name, steps in dict.fromkeys((r["sampler"], r["steps"]) for r in results):
        rows = sorted((r["guidance_scale"], r[key]) for r in results if (r["sampler"], r["steps"]) == (name, steps))
        ax.plot(*zip(*rows), marker="o", label=f"{name}-{steps}")
    ax.set(xlabel="guidance scale w", ylabel=key, title=f"{key} against classifier-free guidance")
    ax.legend()
    return fig


def log_to_wandb(run, results: list[dict], prefix: str = "eval") -> None:
    """A W&B table of the results and, per metric, a line plot against the steps with one line per sampler."""
    import wandb

    columns = COLUMNS + [c for c in ("guidance_scale", "class_accuracy") if c in results[0]]
    run.log({f"{prefix}/results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in results])})
    names = list(dict.fromkeys(r["sampler"] for r in results))
    steps = sorted({r["steps"] for r in results})
    for key in ("fid", "kid_mean", "precision", "recall", "coverage"):
        by_steps = {(r["sampler"], r["steps"]): r[key] for r in results}
        ys = [[by_steps.get((name, k), float("nan")) for k in steps] for name in names]
        run.log({f"{prefix}/{key}_vs_steps": wandb.plot.line_series(xs=steps, ys=ys, keys=names, xname="steps",
                                                                    title=f"{key} against sampling steps")})


def evaluate_run(cfg: DictConfig) -> Path | None:
    """Sample `cfg.n` images per sampler × step count from the same seeds, measure them against the test set,
    and write eval.json and the plots into a new `<run>/eval/` folder; returns it (on rank 0). `cfg` is checked by
    `validation.check_evaluate_config`."""
    factories = {name: sampler_factory(name) for name in cfg.samplers}
    fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices,
                    strategy="ddp" if cfg.devices not in (1, "1") else "auto")
    fabric.launch()
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema, compile=cfg.compile)
    module.to(fabric.device)
    T = module.diffusion.num_timesteps
    if bad := [k for k in cfg.steps if not 1 <= k <= T]:
        raise ConfigError(f"steps={list(cfg.steps)}: {bad} not in 1..{T} (the run's T)")
    data_dir = cfg.data_dir or run_cfg.dataset.data_dir
    with fabric.rank_zero_first():  # rank 0 trains and caches the feature net and the real features when missing
        metrics = QualityMetrics.for_dataset(run_cfg.dataset.name, data_dir, cfg.real_n, cfg.feature_net.cache_dir,
                                             cfg.feature_net.epochs, device=fabric.device)
    inception = None
    if cfg.inception_weights:
        real, _ = load_split(run_cfg.dataset.name, data_dir, train=False, download=False)
        inception = InceptionFID(cfg.inception_weights, real[: cfg.real_n], device=fabric.device)
    if not module.num_classes and list(cfg.guidance_scales) != [0.0]:
        raise ConfigError(f"guidance_scales={list(cfg.guidance_scales)}: this run is unconditional; allowed: [0.0] "
                          "(or a run trained with model.num_classes=10)")
    results = []
    for w in cfg.guidance_scales:
        for name, factory in factories.items():
            for steps in cfg.steps:
                results.append(measure(module.denoiser(guidance_scale=w), factory(module.diffusion, steps=steps),
                                       metrics, cfg.n, module.image_shape, cfg.seed, cfg.batch_size, fabric.device,
                                       fabric.global_rank, fabric.world_size, fabric.all_gather, inception))
                log.info("%-10s %5d steps, w=%g: FID %8.3f  %.1f s", name, steps, w, results[-1]["fid"],
                         results[-1]["seconds"])
    if not fabric.is_global_zero:
        return None
    out = fresh_dir(run_dir / "eval")
    write_json_atomic(out / "eval.json", {
        "ckpt": str(cfg.ckpt), "run_name": run_cfg.get("run_name"), "T": T, "ema": cfg.ema, "seed": cfg.seed,
        "world_size": fabric.world_size, "real_n": len(metrics.real_features), "feature_net": metrics.record,
        "feature_space": f"penultimate layer of a {run_cfg.dataset.name} classifier (not Inception-v3)",
        "inception_weights": cfg.inception_weights,
        "samplers": {name: OmegaConf.to_container(OmegaConf.load(SAMPLER_DIR / f"{name}.yaml")) for name in factories},
        "results": results,
    })
    for key in ("fid", "kid_mean"):
        save(plot_against_steps([r for r in results if r.get("guidance_scale", 0) == cfg.guidance_scales[0]], key),
             out / f"{key}_vs_steps.png")
    if len(cfg.guidance_scales) > 1:
        for key in ("fid", "class_accuracy"):
            save(plot_against_guidance(results, key), out / f"{key}_vs_guidance.png")
    print(results_table(results))
    if cfg.wandb:
        import wandb

        from diffusion_lab.loggers import wandb_mode

        with wandb.init(project=cfg.wandb_project, name=f"{run_cfg.get('run_name')}-eval", job_type="eval",
                        group=run_cfg.get("run_name"), dir=out, mode=wandb_mode(),
                        config=OmegaConf.to_container(cfg)) as run:
            log_to_wandb(run, results)
    log.info("-> %s", out)
    return out
