"""`evaluate.py`'s work: FID, KID, precision/recall and coverage of a trained run per sampler, step count and
guidance scale, written to eval.json, plotted, printed and logged."""

import logging
import os
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from diffusion_lab import rules
from diffusion_lab.checkpoints import load_run
from diffusion_lab.config import build_option, option_config
from diffusion_lab.cost import announced, nfe, seconds_per_evaluation, steps_for_nfe
from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.files import fresh_dir, write_json_atomic
from diffusion_lab.generation import Share, eval_mode, launch, prepare_sampling
from diffusion_lab.images import to_model_space
from diffusion_lab.loggers import wandb_mode
from diffusion_lab.metrics import InceptionFID, QualityMetrics
from diffusion_lab.metrics import uncertainty
from diffusion_lab.metrics.nll import (bound_chain, bound_terms, ode_inputs, ode_log_likelihood, ode_summary,
                                       plot_terms, summary)
from diffusion_lab.metrics.measure import comparisons, log_to_wandb, measure, paired_table, results_table, setting_name
from diffusion_lab.plotting import error_bars, figure, save

log = logging.getLogger(__name__)
NLL_BATCH = 250  # test images per network call of the bound
ODE_BATCH = 50  # test images integrated together by the ODE solver (one step size for all of them)

AXES = {"steps": ("sampling steps", "steps"), "nfe": ("network evaluations per image (NFE)", "nfe"),
        "seconds": ("seconds per 1,000 images, this machine", "seconds_per_1k")}


def interval_key(key: str) -> str:
    """Where a result keeps `key`'s interval: `fid_ci`, and `kid_ci` for `kid_mean`."""
    return f"{key.removesuffix('_mean')}_ci"


def plot_against(results: list[dict], key: str, axis: str = "steps"):
    """One line per sampler: `key` against `axis` (steps, NFE or seconds per 1,000 images), with the 95 %
    intervals as error bars; FID with its real-against-real floor at the results' n (dotted) and, against a
    cost, the Pareto front (the settings no other beats on both quality and cost)."""
    label, x_key = AXES[axis]
    fig = figure(6, 4)
    ax = fig.subplots()
    for name in dict.fromkeys(r["sampler"] for r in results):
        rows = sorted((r for r in results if r["sampler"] == name), key=lambda r: r[x_key])
        ys = [r[key] for r in rows]
        errors = error_bars(ys, [r.get(interval_key(key)) for r in rows])
        ax.errorbar([r[x_key] for r in rows], ys, yerr=errors, marker="o", capsize=3, label=name)
    if key == "fid" and all(r.get("floor_fid") is not None for r in results):
        for n, floor in sorted({(r["n"], r["floor_fid"]) for r in results}):
            ax.axhline(floor, color="grey", linestyle=":", label=f"real vs real, n = {n}")
    if axis != "steps" and key == "fid":
        front = pareto_front([(r[x_key], r[key]) for r in results])
        ax.plot(*zip(*front), color="black", linewidth=0.8, alpha=0.5, label="Pareto front")
    n = sorted({r["n"] for r in results})
    ax.set(xlabel=label, ylabel=key, xscale="log", title=f"{key} against {label.split(' (')[0]} (n = {', '.join(map(str, n))})")
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=8 if entries <= 6 else 6, ncol=1 if entries <= 6 else 2)  # a sweep of solvers: two columns
    return fig


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points that no other point beats on both coordinates (lower is better), by increasing cost."""
    front = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


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


def local_data_dir(run_data_dir: str) -> str:
    """The run's data folder where it exists here, else this machine's (`$DIFFUSION_LAB_DATA`, else ./data): a
    run trained elsewhere, such as a shipped model, is scored against this machine's copy of its data set."""
    return run_data_dir if Path(run_data_dir).is_dir() else os.environ.get("DIFFUSION_LAB_DATA", "./data")


def planned_settings(cfg: DictConfig, factories: dict, diffusion, denoisers: dict) -> list[tuple]:
    """(guidance scale, sampler option, sampler) for every scale × sampler × step schedule (`spacings`, null:
    each sampler's own) × step count, or × NFE budget when `nfe` is given (each solver's most steps within it;
    a budget that gives the steps of an earlier one is measured once)."""
    settings, seen = [], set()
    for w in cfg.guidance_scales:
        for name, factory in factories.items():
            for spacing in cfg.spacings or [None]:
                built = factory if spacing is None else partial(factory, spacing=spacing)
                for budget in cfg.nfe or cfg.steps:
                    steps = budget if cfg.nfe is None else steps_for_nfe(
                        built, diffusion, budget, denoisers[w].evaluations_per_call)
                    sampler = built(diffusion, steps=steps)
                    if (w, sampler.label, steps) not in seen:
                        seen.add((w, sampler.label, steps))
                        settings.append((w, name, sampler))
    return settings


def evaluate_run(cfg: DictConfig) -> Path | None:
    """Sample `cfg.n` images per sampler × step count from the same seeds and measure them against the test set,
    and with `cfg.nll` take the variational bound of `cfg.nll_n` test images; write eval.json and the plots into
    a new `<run>/eval/` folder; returns it (on rank 0). `cfg` is checked by `config_checks.check_evaluate_config`."""
    fabric = launch(cfg.accelerator, cfg.devices)
    module, run_cfg, run_dir = load_run(cfg.ckpt, ema=cfg.ema)
    module.to(fabric.device)
    if cfg.nll and cfg.nll_steps is not None:  # before any sampling, which may take hours
        rules.check_step_counts("nll_steps", cfg.nll_steps, module.diffusion.num_timesteps)
    data_dir = cfg.data_dir or local_data_dir(run_cfg.dataset.data_dir)
    quality = sample_quality(cfg, module, run_cfg, data_dir, fabric) if cfg.samplers else None
    nll = likelihood(cfg, module, run_cfg, data_dir, fabric) if cfg.nll else None
    if not fabric.is_global_zero:
        return None
    out = fresh_dir(run_dir / "eval")
    record = {"ckpt": str(cfg.ckpt), "run_name": run_cfg.get("run_name"), "T": module.diffusion.num_timesteps,
              "ema": cfg.ema, "seed": cfg.seed, "world_size": fabric.world_size}
    results, paired = [], []
    if quality is not None:
        results, paired, metrics, factories = quality
        record |= {
            "real_n": len(metrics.real_features), "resamples": cfg.resamples, "feature_net": metrics.record,
            "feature_space": f"penultimate layer of a {run_cfg.dataset.name} classifier (not Inception-v3)",
            "inception_weights": cfg.inception_weights,
            "samplers": {name: OmegaConf.to_container(option_config("sampler", name)) for name in factories},
            "results": results, "paired": paired,
        }
    if nll is not None:
        record["nll"] = nll
    write_json_atomic(out / "eval.json", record)
    if nll is not None:
        save(plot_terms(nll), out / "nll_terms.png")
        log.info("variational bound: %.4f bits/dim [%.4f, %.4f] over %d test images (%d terms; prior %.2g, "
                 "decoder %.4f, KL terms %.4f)", nll["bpd"], *nll["bpd_ci"], nll["n"], nll["steps"],
                 nll["terms"]["prior"]["bpd"], nll["terms"]["decoder"]["bpd"], nll["terms"]["kl"]["bpd"])
        if "ode" in nll:
            log.info("probability-flow ODE: %.4f bits/dim [%.4f, %.4f] over %d dequantized test images (%d "
                     "evaluations)", nll["ode"]["bpd"], *nll["ode"]["bpd_ci"], nll["ode"]["n"],
                     nll["ode"]["network_evaluations"])
    if results:
        report_quality(cfg, results, paired, out)
    if cfg.wandb:
        import wandb  # only when the results go to W&B: importing it takes seconds

        with wandb.init(project=cfg.wandb_project, name=f"{run_cfg.get('run_name')}-eval", job_type="eval",
                        group=run_cfg.get("run_name"), dir=out, mode=wandb_mode(),
                        config=OmegaConf.to_container(cfg)) as run:
            log_to_wandb(run, results, paired=paired)
            if nll is not None:
                run.summary.update({"nll/bpd": nll["bpd"], **{f"nll/{k}": v["bpd"] for k, v in nll["terms"].items()}})
    log.info("-> %s", out)
    return out


def sample_quality(cfg: DictConfig, module, run_cfg: DictConfig, data_dir: str, fabric):
    """(results, paired differences, the QualityMetrics, the sampler factories) of every planned setting, the same
    `cfg.n` seeds in each; results and differences only on rank 0."""
    factories = {name: build_option("sampler", name) for name in cfg.samplers}
    T = module.diffusion.num_timesteps
    if cfg.nfe is None:
        rules.check_step_counts("steps", cfg.steps, T)
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
    denoisers = {w: module.denoiser(guidance_scale=w) for w in cfg.guidance_scales}
    settings = planned_settings(cfg, factories, module.diffusion, denoisers)
    evaluations = sum(cfg.n * nfe(sampler, denoisers[w]) for w, _, sampler in settings)
    share = Share(cfg.n, fabric.global_rank, fabric.world_size)
    batch_size, compiled = prepare_sampling(module.net, share.per_rank, evaluations // fabric.world_size,
                                            fabric.device, cfg.batch_size, cfg.compile)
    per_eval = seconds_per_evaluation(denoisers[cfg.guidance_scales[-1]], module.image_shape, fabric.device,
                                      batch_size if compiled else min(batch_size, 64))  # compiled: the one shape
    results, statistics = [], {}
    with announced(f"evaluation ({len(settings)} settings × {cfg.n} images)", evaluations, per_eval,
                   enabled=fabric.is_global_zero) as bar:
        for w, name, sampler in settings:
            per_image = nfe(sampler, denoisers[w])
            result, statistics_of_setting = measure(
                denoisers[w], sampler, metrics, cfg.n, module.image_shape, cfg.seed, batch_size, fabric.device,
                fabric.global_rank, fabric.world_size, fabric.all_gather, inception, return_statistics=True,
                on_batch=lambda b: bar.update(b * fabric.world_size * per_image), full_batches=compiled)
            results.append(result)
            statistics[setting_name(result)] = statistics_of_setting
            log.info("%-24s %5d steps (NFE %d), w=%g: FID %8.3f  %.1f s", sampler.label, sampler.num_steps,
                     per_image, w, result["fid"], result["seconds"])
    paired = []
    if cfg.resamples and fabric.is_global_zero:
        log.info("bootstrap: %d replicates of %d settings, with their paired differences", cfg.resamples,
                 len(statistics))
        cis, paired = uncertainty.bootstrap(statistics, len(metrics.real_features), cfg.n, cfg.resamples,
                                            pairs=comparisons(results), keep_replicates=True)
        for result in results:
            result |= cis[setting_name(result)]
    return results, paired, metrics, factories


def report_quality(cfg: DictConfig, results: list[dict], paired: list[dict], out: Path) -> None:
    """The plots of the sample-quality results into `out`, and their tables on the console."""
    unguided = [r for r in results if r.get("guidance_scale", 0) == cfg.guidance_scales[0]]
    for key, axis in (("fid", "steps"), ("kid_mean", "steps"), ("fid", "nfe"), ("fid", "seconds")):
        save(plot_against(unguided, key, axis), out / f"{key}_vs_{axis}.png")
    if len(cfg.guidance_scales) > 1:
        for key in ("fid", "class_accuracy"):
            save(plot_against_guidance(results, key), out / f"{key}_vs_guidance.png")
    print(results_table(results))
    if paired:
        print(f"\npaired differences (the same {cfg.n} seeds; * the 95 % interval excludes 0):")
        print(paired_table(paired))


def likelihood(cfg: DictConfig, module, run_cfg: DictConfig, data_dir: str, fabric) -> dict | None:
    """The variational bound of the first `cfg.nll_n` test images (`metrics.nll`), split over the processes;
    the summary on rank 0."""
    chain = bound_chain(module.diffusion, cfg.nll_steps)
    images, _ = load_split(run_cfg.dataset.name, data_dir, train=False, download=False)
    if cfg.nll_n > len(images):
        raise ConfigError(f"nll_n={cfg.nll_n}: allowed values are 1..{len(images)} (the test split's size)")
    share = Share(cfg.nll_n, fabric.global_rank, fabric.world_size)
    indices = range(share.first, share.first + share.per_rank)
    x0 = to_model_space(share.mine(images, fabric.device))
    evaluations = cfg.nll_n * chain.num_timesteps
    per_eval = seconds_per_evaluation(module.denoiser(), module.image_shape, fabric.device, min(len(x0), 64) or 1)
    terms, priors = [], []
    with announced(f"variational bound ({cfg.nll_n} test images × {chain.num_timesteps} terms)", evaluations,
                   per_eval, enabled=fabric.is_global_zero) as bar, eval_mode(module):
        for start in range(0, len(x0), NLL_BATCH):
            batch = slice(start, start + NLL_BATCH)
            got = bound_terms(module.net, chain, x0[batch], indices[batch], cfg.seed, cfg.nll_clip_denoised,
                              cfg.nll_variance, on_term=lambda b: bar.update(b * fabric.world_size))
            terms.append(got[0])
            priors.append(got[1])
    terms, priors = share.gather(torch.cat(terms), fabric.all_gather), share.gather(torch.cat(priors), fabric.all_gather)
    ode = ode_likelihood(cfg, module, images, fabric) if cfg.nll_ode else None
    if not fabric.is_global_zero:
        return None
    result = summary(terms.cpu(), priors.cpu(), chain, cfg.nll_clip_denoised, cfg.nll_variance)
    if ode is not None:
        result["ode"] = ode
    return result


def ode_likelihood(cfg: DictConfig, module, images, fabric) -> dict:
    """The probability-flow ODE's bits per dimension of the first `cfg.nll_ode_n` test images, dequantized
    (`metrics.nll.ode_log_likelihood`), split over the processes."""
    share = Share(cfg.nll_ode_n, fabric.global_rank, fabric.world_size)
    indices = range(share.first, share.first + share.per_rank)
    x, probes = ode_inputs(share.mine(images), indices, cfg.seed)
    log_likelihoods, evaluations = [], 0
    log.info("probability-flow ODE likelihood of %d test images (RK45 at tolerance %g; each evaluation also "
             "takes a backward pass)", cfg.nll_ode_n, cfg.nll_ode_tolerance)
    with eval_mode(module):
        for start in tqdm(range(0, len(x), ODE_BATCH), desc="ODE likelihood", disable=not fabric.is_global_zero,
                          leave=False):
            batch = slice(start, start + ODE_BATCH)
            log_p, spent = ode_log_likelihood(module.denoiser(), module.diffusion, x[batch].to(fabric.device),
                                              probes[batch].to(fabric.device), cfg.nll_ode_tolerance)
            log_likelihoods.append(log_p)
            evaluations += spent
    log_likelihoods = share.gather(torch.cat(log_likelihoods).to(fabric.device), fabric.all_gather).cpu()
    return ode_summary(log_likelihoods, images[0].numel(), evaluations, cfg.nll_ode_tolerance)
