"""What the 95 % intervals cost: QualityMetrics.score on n generated against 10,000 real 128-dimensional features,
without intervals and with 200 bootstrap replicates (FID, FID∞, KID, precision, recall, coverage, class
entropy), side by side in one process; and the joint bootstrap of several settings with their paired
differences. Gaussian features: the cost does not depend on what they show.

    python benchmarks/bench_bootstrap.py [--n 10000] [--settings 4]
"""

import argparse
import json
import time

import torch
from torch import nn

from diffusion_lab.metrics import QualityMetrics, uncertainty
from timing import machine


class Given(nn.Module):
    """The features are the inputs."""

    num_features = 128

    def features(self, x):
        return x

    def head(self, x):
        return x[:, :10]


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--settings", type=int, default=4)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    real = torch.randn(10_000, 128, generator=g)
    fakes = [torch.randn(args.n, 128, generator=g) * 1.05 + 0.02 * k for k in range(args.settings)]
    probabilities = torch.softmax(torch.randn(args.n, 10, generator=g), 1)
    plain = QualityMetrics(Given(), real, resamples=0)
    with_ci = QualityMetrics(Given(), real, resamples=200)
    without = seconds(lambda: plain.score(fakes[0], probabilities))
    within = seconds(lambda: with_ci.score(fakes[0], probabilities))
    again = seconds(lambda: with_ci.score(fakes[1], probabilities))  # the real set's replicates are cached now
    joint = QualityMetrics(Given(), real, resamples=200)
    names = [f"setting{k}" for k in range(args.settings)]
    statistics = {name: joint.statistics(f, probabilities) for name, f in zip(names, fakes)}
    paired = seconds(lambda: uncertainty.bootstrap(statistics, len(real), args.n, 200,
                                                   pairs=[(a, names[0]) for a in names[1:]]))
    print(json.dumps({**machine(), "n": args.n, "real_n": 10_000, "resamples": 200,
                      "score_seconds_without_intervals": round(without, 2),
                      "score_seconds_with_intervals": round(within, 2),
                      "extra_seconds_first_setting": round(within - without, 2),
                      "extra_seconds_next_setting": round(again - without, 2),
                      f"joint_bootstrap_seconds_{args.settings}_settings_with_paired": round(paired, 2)}))


if __name__ == "__main__":
    main()
