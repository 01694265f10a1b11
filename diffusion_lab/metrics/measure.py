"""Sample quality of a sampler: draw n images from a denoiser over any number of processes, score exactly n,
and show the results as a table and on W&B. Shared by evaluate.py and the training callback."""

import time
from collections.abc import Callable

import torch

from diffusion_lab.cost import nfe, synchronize
from diffusion_lab.diffusion import Denoiser
from diffusion_lab.generation import Share, generate
from diffusion_lab.images import requested_classes
from diffusion_lab.metrics.quality import InceptionFID, QualityMetrics
from diffusion_lab.sampling import Sampler

COLUMNS = ["sampler", "spacing", "steps", "nfe", "fid", "kid_mean", "kid_std", "precision", "recall", "coverage", "class_entropy",
           "classes_below_half", "confidence", "n", "seconds_per_1k", "seconds", "images_per_second"]


def measure(denoiser: Denoiser, sampler: Sampler, metrics: QualityMetrics, n: int, image_shape, seed: int,
            batch_size: int, device, rank: int = 0, world_size: int = 1,
            all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
            inception: InceptionFID | None = None, return_statistics: bool = False,
            on_batch: Callable[[int], None] | None = None, full_batches: bool = False) -> dict | tuple[dict, dict]:
    """Sample n images with `sampler` and score them (with `inception` too, when given). Image i has its own
    noise stream (seed, i), the same in every setting; with several processes, rank r draws its `Share`, the
    features are gathered rank by rank and exactly the first n are scored, on every rank, so no image is
    counted twice.
    For a class-conditional network, image i is asked for class i % C, with the denoiser's guidance, and the
    result adds how often the data set's classifier assigns the class asked for, overall and per class. With
    `return_statistics`, (result without intervals, its metrics as statistics of the resampling counts), for
    intervals and paired differences drawn over several settings at once (`uncertainty.bootstrap`). The result has the network
    evaluations per image (`nfe`) and the seconds per 1,000 images of the sampling alone (`seconds_per_1k`, wall
    time of all processes together); `on_batch(b)` is told of each batch of b images this process drew; `full_batches` as in `generate`."""
    share = Share(n, rank, world_size)
    classes = requested_classes(None, getattr(denoiser.net, "num_classes", None), share.total)
    start = time.perf_counter()
    images = generate(denoiser, sampler, share.per_rank, image_shape, seed, batch_size, device,
                      labels=share.mine(classes, device), first=share.first, on_batch=on_batch,
                      full_batches=full_batches)
    synchronize(device)
    sampling_seconds = time.perf_counter() - start
    features, probabilities = (share.gather(x, all_gather) for x in metrics.features(images))
    seconds = time.perf_counter() - start
    asked = classes[:n] if classes is not None else None
    result = {"sampler": sampler.label, "spacing": sampler.spacing, "steps": sampler.num_steps,
              "nfe": nfe(sampler, denoiser),
              **metrics.score(features, probabilities, asked, intervals=not return_statistics),
              "seconds_per_1k": round(1000 * sampling_seconds / n, 3),
              "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 2)}
    if classes is not None:
        result["guidance_scale"] = denoiser.guidance_scale
    if inception is not None:
        result["inception_fid"] = inception(share.gather(images, all_gather))
    return (result, metrics.statistics(features, probabilities, asked)) if return_statistics else result


def setting_name(result: dict) -> str:
    """`ddim-50`, or `ddim-50-w2` for a guided setting."""
    guided = f"-w{result['guidance_scale']:g}" if "guidance_scale" in result else ""
    return f"{result['sampler']}-{result['steps']}{guided}"


def comparisons(results: list[dict]) -> list[tuple[str, str]]:
    """The pairs of settings to compare, at each guidance scale: every step count against the largest of its
    sampler, and every sampler against each later one at equal cost (network evaluations per image)."""
    pairs = []
    for w in dict.fromkeys(r.get("guidance_scale") for r in results):
        rows = [r for r in results if r.get("guidance_scale") == w]
        for name in dict.fromkeys(r["sampler"] for r in rows):
            mine = [r for r in rows if r["sampler"] == name]
            most = max(mine, key=lambda r: r["steps"])
            pairs += [(setting_name(r), setting_name(most)) for r in mine if r is not most]
        for cost in dict.fromkeys(r["nfe"] for r in rows):
            same = [setting_name(r) for r in rows if r["nfe"] == cost]
            pairs += [(a, b) for i, a in enumerate(same) for b in same[i + 1:]]
    return pairs


PAIRED_COLUMNS = {"fid": "ΔFID", "fid_inf": "ΔFID∞", "kid": "ΔKID", "precision": "Δprec", "recall": "Δrecall",
                  "coverage": "Δcover", "class_entropy": "Δentropy", "class_accuracy": "Δclass acc"}


def paired_table(rows: list[dict]) -> str:
    """The paired differences as text, one line per pair of settings, `*` where the interval excludes 0; FID's
    interval in full."""
    metrics = [m for m in PAIRED_COLUMNS if any(r["metric"] == m for r in rows)]
    pairs = {(r["setting"], r["against"]): {} for r in rows}
    for r in rows:
        pairs[r["setting"], r["against"]][r["metric"]] = r
    lines = [f"{'setting':<28}{'against':<28}" + "".join(f"{PAIRED_COLUMNS[m]:>11}" for m in metrics[:1])
             + f"{'95% CI':>22}" + "".join(f"{PAIRED_COLUMNS[m]:>11}" for m in metrics[1:])]
    for (setting, against), by_metric in pairs.items():
        cells = [f"{by_metric[m]['diff']:>10.4g}{'*' if by_metric[m]['distinguishable'] else ' '}"
                 if m in by_metric else f"{'-':>11}" for m in metrics]
        ci = interval(by_metric[metrics[0]]["ci"]) if metrics[0] in by_metric else "-"
        lines.append(f"{setting:<28}{against:<28}{cells[0]}{ci:>22}{''.join(cells[1:])}")
    return "\n".join(lines)


def results_table(results: list[dict]) -> str:
    """The results as a fixed-width text table, one row per sampler and step count: cost (network evaluations
    per image, seconds per 1,000 images), n, FID with its interval and its real-against-real floor at this n,
    FID∞, KID (×10³) with its interval, precision, recall, coverage, class entropy."""
    header = f"{'sampler':<24}{'steps':>6}{'NFE':>6}{'s/1k':>8}{'n':>7}{'FID':>9}{'FID 95% CI':>20}{'floor':>8}" \
             f"{'FID∞':>8}{'KID×1e3':>9}{'KID 95% CI':>18}{'prec':>7}{'recall':>7}{'cover':>7}{'entropy':>8}"
    header += f"{'w':>6}{'class acc':>10}" if "class_accuracy" in results[0] else ""
    rows = [f"{r['sampler']:<24}{r['steps']:>6}{r['nfe']:>6}{r['seconds_per_1k']:>8.1f}{r['n']:>7}{r['fid']:>9.4g}"
            f"{interval(r.get('fid_ci')):>20}{number(r.get('floor_fid')):>8}{number(r.get('fid_inf')):>8}"
            f"{1e3 * r['kid_mean']:>9.3g}{interval(r.get('kid_ci'), 1e3):>18}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['coverage']:>7.3f}{r['class_entropy']:>8.3f}"
            + (f"{r['guidance_scale']:>6g}{r['class_accuracy']:>10.3f}" if "class_accuracy" in r else "") for r in results]
    return "\n".join([header, *rows])


def number(value: float | None) -> str:
    """A value to 4 significant digits, or `-`."""
    return "-" if value is None else f"{value:.4g}"


def interval(ci: list[float] | None, scale: float = 1.0) -> str:
    """`[low, high]` (times `scale`) to 4 significant digits, or `-` where no interval was computed."""
    return f"[{scale * ci[0]:.4g}, {scale * ci[1]:.4g}]" if ci else "-"


def wandb_columns(results: list[dict]) -> tuple[list[str], list[list]]:
    """(columns, rows) of the W&B results table: each interval as two columns, `<metric>_ci_low` and
    `<metric>_ci_high`."""
    extra = [c for c in ("floor_fid", "fid_inf", "guidance_scale", "class_accuracy") if c in results[0]]
    intervals = [c for c in results[0] if c.endswith("_ci")]
    columns = COLUMNS + extra + [f"{c}_{end}" for c in intervals for end in ("low", "high")]
    rows = [[r.get(c) for c in COLUMNS + extra] + [bound for c in intervals for bound in (r.get(c) or [None, None])]
            for r in results]
    return columns, rows


def log_to_wandb(run, results: list[dict], prefix: str = "eval", paired: list[dict] = ()) -> None:
    """W&B tables of the results (and of the paired differences) and, per metric, line plots against the steps
    and against NFE with one line per sampler."""
    import wandb  # only where results go to W&B: importing it takes seconds

    columns, rows = wandb_columns(results)
    run.log({f"{prefix}/results": wandb.Table(columns=columns, data=rows)})
    if paired:
        keys = ["setting", "against", "metric", "diff", "ci_low", "ci_high", "distinguishable"]
        run.log({f"{prefix}/paired": wandb.Table(columns=keys, data=[
            [p["setting"], p["against"], p["metric"], p["diff"], *p["ci"], p["distinguishable"]] for p in paired])})
    names = list(dict.fromkeys(r["sampler"] for r in results))
    for axis, words in (("steps", "sampling steps"), ("nfe", "network evaluations per image")):
        xs = sorted({r[axis] for r in results})
        for key in ("fid", "kid_mean", "precision", "recall", "coverage"):
            by_x = {(r["sampler"], r[axis]): r[key] for r in results}
            ys = [[by_x.get((name, x), float("nan")) for x in xs] for name in names]
            run.log({f"{prefix}/{key}_vs_{axis}": wandb.plot.line_series(xs=xs, ys=ys, keys=names, xname=axis,
                                                                         title=f"{key} against {words}")})
