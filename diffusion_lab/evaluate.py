"""`evaluate.py`'s work: FID, KID, precision/recall and coverage of a trained run per sampler, step count and
guidance scale, written to eval.json, plotted, printed and logged."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from diffusion_lab import rules
from diffusion_lab.checkpoints import load_run
from diffusion_lab.config import build_option, option_config
from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.files import fresh_dir, write_json_atomic
from diffusion_lab.generation import launch
from diffusion_lab.loggers import wandb_mode
from diffusion_lab.metrics import InceptionFID, QualityMetrics
from diffusion_lab.metrics import uncertainty
from diffusion_lab.metrics.measure import comparisons, log_to_wandb, measure, paired_table, results_table, setting_name
from diffusion_lab.plotting import figure, save

log = logging.getLogger(__name__)

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


def evaluate_run(cfg: DictConfig) -> Path | None:
    """Sample `cfg.n` images per sampler × step count from the same seeds, measure them against the test set,
    and write eval.json and the plots into a new `<run>/eval/` folder; returns it (on rank 0). `cfg` is checked by
    `config_checks.check_evaluate_config`."""
    factories = {name: build_option("sampler", name) for name in cfg.samplers}
    fabric = launch(cfg.accelerator, cfg.devices)
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema, compile=cfg.compile)
    module.to(fabric.device)
    T = module.diffusion.num_timesteps
    rules.check_step_counts("steps", cfg.steps, T)
    data_dir = cfg.data_dir or run_cfg.dataset.data_dir
    with fabric.rank_zero_first():  # rank 0 trains and caches the feature net and the real features when missing
        metrics = QualityMetrics.for_dataset(run_cfg.dataset.name, data_dir, cfg.real_n, cfg.feature_net.cache_dir,
                                             cfg.feature_net.epochs, device=fabric.device, resamples=cfg.resamples)
    inception = None
    if cfg.inception_weights:
        real, _ = load_split(run_cfg.dataset.name, data_dir, train=False, download=False)
        inception = InceptionFID(cfg.inception_weights, real[: cfg.real_n], device=fabric.device)
    if not module.num_classes and list(cfg.guidance_scales) != [0.0]:
        raise ConfigError(f"guidance_scales={list(cfg.guidance_scales)}: this run is unconditional; allowed: [0.0] "
                          "(or a run trained with model.num_classes=10)")
    results, features = [], {}
    for w in cfg.guidance_scales:
        for name, factory in factories.items():
            for steps in cfg.steps:
                result, features_of_setting = measure(
                    module.denoiser(guidance_scale=w), factory(module.diffusion, steps=steps), metrics, cfg.n,
                    module.image_shape, cfg.seed, cfg.batch_size, fabric.device, fabric.global_rank,
                    fabric.world_size, fabric.all_gather, inception, return_features=True)
                results.append(result)
                features[setting_name(result)] = features_of_setting.cpu()
                log.info("%-10s %5d steps, w=%g: FID %8.3f  %.1f s", name, steps, w, result["fid"], result["seconds"])
    if not fabric.is_global_zero:
        return None
    pairs = comparisons(results)
    paired = uncertainty.paired_differences({k: metrics.frechet_distance(v) for k, v in features.items()}, pairs,
                                            len(metrics.real_features), cfg.n, resamples=cfg.resamples) \
        if cfg.resamples and pairs else []
    out = fresh_dir(run_dir / "eval")
    write_json_atomic(out / "eval.json", {
        "ckpt": str(cfg.ckpt), "run_name": run_cfg.get("run_name"), "T": T, "ema": cfg.ema, "seed": cfg.seed,
        "world_size": fabric.world_size, "real_n": len(metrics.real_features), "feature_net": metrics.record,
        "feature_space": f"penultimate layer of a {run_cfg.dataset.name} classifier (not Inception-v3)",
        "inception_weights": cfg.inception_weights,
        "samplers": {name: OmegaConf.to_container(option_config("sampler", name)) for name in factories},
        "results": results, "paired": paired,
    })
    for key in ("fid", "kid_mean"):
        save(plot_against_steps([r for r in results if r.get("guidance_scale", 0) == cfg.guidance_scales[0]], key),
             out / f"{key}_vs_steps.png")
    if len(cfg.guidance_scales) > 1:
        for key in ("fid", "class_accuracy"):
            save(plot_against_guidance(results, key), out / f"{key}_vs_guidance.png")
    print(results_table(results))
    if paired:
        print(f"\npaired differences of FID (the same {cfg.n} seeds; * the 95 % interval excludes 0):")
        print(paired_table(paired))
    if cfg.wandb:
        import wandb  # only when the results go to W&B: importing it takes seconds

        with wandb.init(project=cfg.wandb_project, name=f"{run_cfg.get('run_name')}-eval", job_type="eval",
                        group=run_cfg.get("run_name"), dir=out, mode=wandb_mode(),
                        config=OmegaConf.to_container(cfg)) as run:
            log_to_wandb(run, results)
    log.info("-> %s", out)
    return out
