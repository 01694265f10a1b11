"""Bootstrap confidence intervals for the sample-quality numbers, from features computed once.

Each replicate resamples the generated images and the real images with replacement, as counts: a replicate
of FID costs one weighted mean and covariance per set, no image is scored again. The interval is the basic
(pivotal) bootstrap interval, [2θ̂ − q_hi, 2θ̂ − q_lo] of the replicates θ*: FID is biased upwards at finite n
and a replicate (about 63 % distinct images) more so, which shifts the percentile interval above the truth
(on 8-dimensional Gaussians at n = 1,000 it covered the true Fréchet distance 71 % of the time, the basic one
97 %; at 32 dimensions 0 % and 94 %). So the interval is for the population value and may lie below a
strongly biased estimate. Precision, recall and coverage are resampled with their k-NN balls held fixed
(resampling points into their own k-NN sets would add duplicates at distance 0).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

LEVEL = 0.95

Statistic = Callable[[torch.Tensor, torch.Tensor], float]  # (real counts, generated counts) -> value


def moments(x: torch.Tensor, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance with the n − 1 denominator, as torchmetrics') of the rows of x, row i counted
    `counts[i]` times (all once by default), in float64."""
    x = x.double()
    counts = torch.ones(len(x), dtype=torch.float64) if counts is None else counts.double()
    n = counts.sum()
    mean = counts @ x / n
    centred = x - mean
    return mean, (centred * counts[:, None]).T @ centred / (n - 1)


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0 read as 0)."""
    try:
        values, vectors = torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:  # LAPACK gives up on some rank-deficient matrices: nudge the zero eigenvalues
        jitter = 1e-12 * float(matrix.trace()) / len(matrix)
        values, vectors = torch.linalg.eigh(matrix + jitter * torch.eye(len(matrix), dtype=matrix.dtype))
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor,
                     root1: torch.Tensor | None = None) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2·(Σ1Σ2)^½). The trace of the root is summed over the eigenvalues of the
    symmetric Σ1^½ Σ2 Σ1^½, which are those of Σ1Σ2; pass Σ1^½ as `root1` when it is reused."""
    if not (torch.isfinite(cov1).all() and torch.isfinite(cov2).all()):
        raise ValueError("frechet_distance: a covariance is not finite (fewer than two images?)")
    root1 = psd_sqrt(cov1) if root1 is None else root1
    product = root1 @ cov2 @ root1
    try:
        root_trace = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    except torch.linalg.LinAlgError:  # LAPACK gives up on some rank-deficient matrices (n below the dimension)
        root_trace = torch.linalg.eigvals(cov1 @ cov2).sqrt().real.sum()
    return float(((mean1 - mean2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * root_trace)


def intercept_in_inverse_n(sizes: list[float], values: list[float]) -> float:
    """The least-squares line through (1/size, value), evaluated at 1/size = 0 (Chong & Forsyth 2020's FID∞)."""
    x = 1 / torch.tensor(sizes, dtype=torch.float64)
    y = torch.tensor(values, dtype=torch.float64)
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    return float(y.mean() - slope * x.mean())


def share(indicator: torch.Tensor) -> Callable[[torch.Tensor], float]:
    """The share of a per-image indicator, each image counted as often as its resampling count."""
    values = indicator.double()
    return lambda counts: float(counts.double() @ values / counts.sum())


def histogram_entropy(predicted: torch.Tensor, num_classes: int) -> Callable[[torch.Tensor], float]:
    """The entropy (nats) of the histogram of predicted classes, each image counted as often as its count."""
    def entropy(counts: torch.Tensor) -> float:
        p = torch.bincount(predicted, weights=counts.double(), minlength=num_classes)
        p = p[p > 0] / p.sum()
        return float(-(p * p.log()).sum()) + 0.0
    return entropy


def basic_interval(estimate: float, replicates: torch.Tensor, level: float = LEVEL, lowest: float = -float("inf"),
                   highest: float = float("inf")) -> list[float]:
    """[2θ̂ − q_hi, 2θ̂ − q_lo] of the replicates' quantiles, clipped to [lowest, highest]."""
    q_lo, q_hi = torch.quantile(replicates.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2],
                                                                  dtype=torch.float64)).tolist()
    return [min(max(2 * estimate - q_hi, lowest), highest), min(max(2 * estimate - q_lo, lowest), highest)]


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block: LAPACK's eigensolvers on 128 × 128 matrices, most of a
    replicate's work, ran 1 ms a call on one thread and 30 ms on two (their parallel regions are too small)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def bootstrap(settings: dict[str, dict[str, tuple[Statistic, float, float]]], n_real: int, n_fake: int,
              resamples: int = 200, seed: int = 0, pairs: list[tuple[str, str]] = (),
              level: float = LEVEL, keep_replicates: bool = False) -> tuple[dict[str, dict], list[dict]]:
    """Intervals and paired differences for several settings scored on the same image indices and real set.

    `settings` maps a setting to its statistics, `name: (statistic, lowest, highest value it can take)`. Every
    replicate draws one resampling of the real images and one of the image indices, for all settings and
    statistics, from a fixed seed: image i of every setting started from the same noise, so settings are
    compared image by image. Replicate k depends only on (seed, k, n_real, n_fake), not on the settings, so
    the replicates kept by two calls (`keep_replicates`: each setting's `replicates`, {name: {estimate,
    values}}) pair offline as they would in one call (`paired_difference`). Returns ({setting: {`<name>_ci`:
    [low, high]}}, and for each (setting, against) of `pairs` and each statistic both have, a row {setting,
    against, metric, diff, ci, distinguishable}: whether the difference's interval excludes 0 at this n)."""
    generator = torch.Generator().manual_seed(seed)
    replicates = {(s, name): [] for s, statistics in settings.items() for name in statistics}
    with one_thread():
        for _ in range(resamples):
            real = torch.bincount(torch.randint(n_real, (n_real,), generator=generator), minlength=n_real)
            fake = torch.bincount(torch.randint(n_fake, (n_fake,), generator=generator), minlength=n_fake)
            for (s, name), values in replicates.items():
                values.append(settings[s][name][0](real, fake))
        ones_real, ones_fake = torch.ones(n_real, dtype=torch.long), torch.ones(n_fake, dtype=torch.long)
        estimates = {(s, name): settings[s][name][0](ones_real, ones_fake) for s, name in replicates}
    replicates = {key: torch.tensor(values, dtype=torch.float64) for key, values in replicates.items()}
    cis = {s: {f"{name}_ci": basic_interval(estimates[s, name], replicates[s, name], level, lowest, highest)
               for name, (_, lowest, highest) in statistics.items()} for s, statistics in settings.items()}
    if keep_replicates:
        for s, statistics in settings.items():
            cis[s]["replicates"] = {name: {"estimate": estimates[s, name],
                                           "values": replicates[s, name].tolist()}
                                    for name in statistics}
    rows = []
    for setting, against in pairs:
        for name in [n for n in settings[setting] if n in settings[against]]:
            rows.append({"setting": setting, "against": against, "metric": name,
                         **paired_difference(estimates[setting, name], replicates[setting, name],
                                             estimates[against, name], replicates[against, name], level)})
    return cis, rows


def paired_difference(estimate: float, replicates: torch.Tensor, against: float, against_replicates: torch.Tensor,
                      level: float = LEVEL) -> dict:
    """{diff, ci, distinguishable} of estimate − against, its basic interval from the replicates' differences
    (replicate k of both drawn from the same resampling)."""
    diff = estimate - against
    ci = basic_interval(diff, torch.as_tensor(replicates, dtype=torch.float64)
                        - torch.as_tensor(against_replicates, dtype=torch.float64), level)
    return {"diff": diff, "ci": ci, "distinguishable": ci[0] > 0 or ci[1] < 0}


def intervals(statistics: dict[str, tuple[Statistic, float, float]], n_real: int, n_fake: int,
              resamples: int = 200, seed: int = 0, level: float = LEVEL) -> dict[str, list[float]]:
    """`<name>_ci: [low, high]` for each statistic of one setting (see `bootstrap`)."""
    return bootstrap({"": statistics}, n_real, n_fake, resamples, seed, level=level)[0][""]
