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

from collections.abc import Callable

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


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2·(Σ1Σ2)^½), the trace of the root summed over the eigenvalues of Σ1Σ2
    (as torchmetrics computes FID)."""
    root_trace = torch.linalg.eigvals(cov1 @ cov2).sqrt().real.sum()
    return float(((mean1 - mean2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * root_trace)


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


def replicate(statistics: dict[str, Statistic], n_real: int, n_fake: int, resamples: int,
              seed: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(each statistic on the sets as they are, its `resamples` bootstrap replicates): every replicate resamples
    both sets once for all the statistics, from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    replicates = {name: [] for name in statistics}
    for _ in range(resamples):
        real = torch.bincount(torch.randint(n_real, (n_real,), generator=generator), minlength=n_real)
        fake = torch.bincount(torch.randint(n_fake, (n_fake,), generator=generator), minlength=n_fake)
        for name, statistic in statistics.items():
            replicates[name].append(statistic(real, fake))
    estimates = {name: statistic(torch.ones(n_real), torch.ones(n_fake)) for name, statistic in statistics.items()}
    return estimates, {name: torch.tensor(values, dtype=torch.float64) for name, values in replicates.items()}


def intervals(statistics: dict[str, tuple[Statistic, float, float]], n_real: int, n_fake: int,
              resamples: int = 200, seed: int = 0, level: float = LEVEL) -> dict[str, list[float]]:
    """`<name>_ci: [low, high]` for each `name: (statistic, lowest, highest value it can take)`: the basic
    bootstrap interval of its replicates, clipped to the statistic's range."""
    estimates, replicates = replicate({name: s for name, (s, _, _) in statistics.items()}, n_real, n_fake,
                                      resamples, seed)
    return {f"{name}_ci": basic_interval(estimates[name], replicates[name], level, lowest, highest)
            for name, (_, lowest, highest) in statistics.items()}


def paired_differences(statistics: dict[str, Statistic], pairs: list[tuple[str, str]], n_real: int, n_fake: int,
                       metric: str = "fid", resamples: int = 200, seed: int = 0, level: float = LEVEL) -> list[dict]:
    """For each (setting, against) of `pairs`: the difference of their statistics and its basic interval. Each
    replicate draws one resampling of the real images and one of the image indices for all settings: image i
    of every setting started from the same noise, so the settings are compared image by image. `distinguishable`
    says whether the interval excludes 0 at this n."""
    estimates, replicates = replicate(statistics, n_real, n_fake, resamples, seed)
    rows = []
    for setting, against in pairs:
        diff = estimates[setting] - estimates[against]
        ci = basic_interval(diff, replicates[setting] - replicates[against], level)
        rows.append({"setting": setting, "against": against, "metric": metric, "diff": diff, "ci": ci,
                     "distinguishable": ci[0] > 0 or ci[1] < 0})
    return rows
