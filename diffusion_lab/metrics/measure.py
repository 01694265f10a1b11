"""Sample quality of a sampler: draw n images from a denoiser over any number of processes, score exactly n,
and show the results as a table and on W&B. Shared by evaluate.py and the training callback."""

import time
from collections.abc import Callable

import torch

from diffusion_lab.diffusion import Denoiser
from diffusion_lab.generation import Share, generate
from diffusion_lab.images import requested_classes
from diffusion_lab.metrics.quality import InceptionFID, QualityMetrics
from diffusion_lab.sampling import Sampler

COLUMNS = ["sampler", "steps", "fid", "kid_mean", "kid_std", "precision", "recall", "coverage", "class_entropy",
           "classes_below_half", "confidence", "n", "seconds", "images_per_second"]


def measure(denoiser: Denoiser, sampler: Sampler, metrics: QualityMetrics, n: int, image_shape, seed: int,
            batch_size: int, device, rank: int = 0, world_size: int = 1,
            all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
            inception: InceptionFID | None = None, return_features: bool = False) -> dict | tuple[dict, torch.Tensor]:
    """Sample n images with `sampler` and score them (with `inception` too, when given). Image i has its own
    noise stream (seed, i), the same in every setting; with several processes, rank r draws its `Share`, the
    features are gathered rank by rank and exactly the first n are scored, on every rank, so no image is
    counted twice.
    For a class-conditional network, image i is asked for class i % C, with the denoiser's guidance, and the
    result adds how often the data set's classifier assigns the class asked for, overall and per class. With
    `return_features`, (result, the n images' features) for paired comparisons."""
    share = Share(n, rank, world_size)
    classes = requested_classes(None, getattr(denoiser.net, "num_classes", None), share.total)
    start = time.perf_counter()
    images = generate(denoiser, sampler, share.per_rank, image_shape, seed, batch_size, device,
                      labels=share.mine(classes, device), first=share.first)
    features, probabilities = (share.gather(x, all_gather) for x in metrics.features(images))
    seconds = time.perf_counter() - start
    asked = classes[:n] if classes is not None else None
    result = {"sampler": sampler.name, "steps": sampler.num_steps, **metrics.score(features, probabilities, asked),
              "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 2)}
    if classes is not None:
        result["guidance_scale"] = denoiser.guidance_scale
    if inception is not None:
        result["inception_fid"] = inception(share.gather(images, all_gather))
    return (result, features) if return_features else result


def setting_name(result: dict) -> str:
    """`ddim-50`, or `ddim-50-w2` for a guided setting."""
    guided = f"-w{result['guidance_scale']:g}" if "guidance_scale" in result else ""
    return f"{result['sampler']}-{result['steps']}{guided}"


def comparisons(results: list[dict]) -> list[tuple[str, str]]:
    """The pairs of settings to compare, at each guidance scale: every step count against the largest of its
    sampler, and every sampler against each later one at equal steps."""
    pairs = []
    for w in dict.fromkeys(r.get("guidance_scale") for r in results):
        rows = [r for r in results if r.get("guidance_scale") == w]
        for name in dict.fromkeys(r["sampler"] for r in rows):
            mine = [r for r in rows if r["sampler"] == name]
            most = max(mine, key=lambda r: r["steps"])
            pairs += [(setting_name(r), setting_name(most)) for r in mine if r is not most]
        for steps in dict.fromkeys(r["steps"] for r in rows):
            same = [setting_name(r) for r in rows if r["steps"] == steps]
            pairs += [(a, b) for i, a in enumerate(same) for b in same[i + 1:]]
    return pairs


def paired_table(rows: list[dict]) -> str:
    """The paired differences as text, `*` where the interval excludes 0."""
    lines = [f"{'setting':<18}{'against':<18}{'metric':<8}{'diff':>10}{'95% CI':>22}"]
    lines += [f"{r['setting']:<18}{r['against']:<18}{r['metric']:<8}{r['diff']:>10.4g}{interval(r['ci']):>22}"
              + (" *" if r["distinguishable"] else "") for r in rows]
    return "\n".join(lines)


def results_table(results: list[dict]) -> str:
    """The results as a fixed-width text table, one row per sampler and step count."""
    header = f"{'sampler':<11}{'steps':>6}{'FID':>10}{'FID 95% CI':>22}{'KID':>20}{'prec':>7}{'recall':>7}{'cover':>7}" \
             f"{'entropy':>8}{'conf':>6}{'s/1k img':>10}"
    header += f"{'w':>6}{'class acc':>10}" if "class_accuracy" in results[0] else ""
    rows = [f"{r['sampler']:<11}{r['steps']:>6}{r['fid']:>10.4g}{interval(r.get('fid_ci')):>22}"
            f"{r['kid_mean']:>11.4g} ±{r['kid_std']:<7.2g}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['coverage']:>7.3f}{r['class_entropy']:>8.3f}"
            f"{r['confidence']:>6.3f}"
            f"{1000 * r['seconds'] / r['n']:>10.1f}"
            + (f"{r['guidance_scale']:>6g}{r['class_accuracy']:>10.3f}" if "class_accuracy" in r else "") for r in results]
    return "\n".join([header, *rows])


def interval(ci: list[float] | None) -> str:
    """`[low, high]` to 4 significant digits, or `-` where no interval was computed."""
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-"


def log_to_wandb(run, results: list[dict], prefix: str = "eval") -> None:
    """A W&B table of the results and, per metric, a line plot against the steps with one line per sampler."""
    import wandb  # only where results go to W&B: importing it takes seconds

    columns = COLUMNS + [c for c in ("guidance_scale", "class_accuracy") if c in results[0]]
    run.log({f"{prefix}/results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in results])})
    names = list(dict.fromkeys(r["sampler"] for r in results))
    steps = sorted({r["steps"] for r in results})
    for key in ("fid", "kid_mean", "precision", "recall", "coverage"):
        by_steps = {(r["sampler"], r["steps"]): r[key] for r in results}
        ys = [[by_steps.get((name, k), float("nan")) for k in steps] for name in names]
        run.log({f"{prefix}/{key}_vs_steps": wandb.plot.line_series(xs=steps, ys=ys, keys=names, xname="steps",
                                                                    title=f"{key} against sampling steps")})
