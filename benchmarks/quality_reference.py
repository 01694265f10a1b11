"""Reference points of the quality metrics for each data set: the real-data floor and the noise ceiling.

    python benchmarks/quality_reference.py [--datasets mnist fashion_mnist] [--n 10000] [--cache-dir DIR]

Compares n training images (the floor: what a perfect generator would score) and n images of clipped
Gaussian noise (the ceiling) with n test images, in the feature space of the data set's own classifier.
Prints one JSON object per data set and comparison, with the seconds the metrics took.
"""

import argparse
import json
import os
import time

import torch

from diffusion_lab.data import load_split
from diffusion_lab.metrics.quality import QualityMetrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--data-dir", default=os.environ.get("DIFFUSION_LAB_DATA", "./data"))
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    for dataset in args.datasets:
        QualityMetrics.for_dataset(dataset, args.data_dir, args.n, args.cache_dir)  # trains and caches when missing
        train, _ = load_split(dataset, args.data_dir, train=True, download=False)
        start = time.perf_counter()
        metrics = QualityMetrics.for_dataset(dataset, args.data_dir, args.n, args.cache_dir)
        setup = time.perf_counter() - start
        noise = ((torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5)
                 .clamp(0, 1) * 255).to(torch.uint8)
        for name, fake in (("train_vs_test", train[: args.n]), ("noise_vs_test", noise)):
            start = time.perf_counter()
            result = metrics(fake)
            print(json.dumps({"dataset": dataset, "comparison": name, "feature_net_test_accuracy":
                              metrics.record["test_accuracy"], **{k: round(v, 5) for k, v in result.items()},
                              "metric_seconds": round(time.perf_counter() - start, 2),
                              "cached_setup_seconds": round(setup, 2)}))


if __name__ == "__main__":
    main()
