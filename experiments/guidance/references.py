"""The best the study's numbers can be: n real MNIST training images, n/10 of each digit as the samples are asked
for, scored like them (FID, KID, precision, recall, coverage) against the same test-set reference in the same
feature space; at small n FID is biased upwards, and this is its floor. The ceiling of class accuracy is the
classifier's accuracy on the test set (on training images, which it was trained on, it would be inflated).

    python experiments/guidance/references.py <out.json> [n]     # MNIST under DIFFUSION_LAB_DATA or ./data
"""

import os
import sys

import torch

from diffusion_lab.data import load_split
from diffusion_lab.files import write_json_atomic
from diffusion_lab.metrics import QualityMetrics


def main(out: str, n: str = "500") -> None:
    data_dir = os.environ.get("DIFFUSION_LAB_DATA", "./data")
    images, labels = load_split("mnist", data_dir, train=True, download=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    pick = torch.cat([order[labels[order] == c][: int(n) // 10] for c in range(10)])
    metrics = QualityMetrics.for_dataset("mnist", data_dir)
    features, probabilities = metrics.features(images[pick])
    result = {"images": f"{len(pick)} MNIST training images, {int(n) // 10} of each digit",
              **metrics.score(features, probabilities), "classifier_test_accuracy": metrics.record["test_accuracy"]}
    write_json_atomic(out, result)
    print(result)


if __name__ == "__main__":
    main(*sys.argv[1:])
