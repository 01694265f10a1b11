"""Sample quality in a feature space: FID and KID (torchmetrics), improved precision and recall, class coverage."""

import math

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


@torch.no_grad()
def knn_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself
    return torch.cat(radii)


@torch.no_grad()
def manifold_coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Share of `queries` inside at least one ball (support point, its k-NN radius)."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], support)
        inside.append((d <= radii[None]).any(1))
    return torch.cat(inside).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of fake features inside
    the real manifold (k-NN balls around real features), recall the share of real ones inside the fake one."""
    real, fake = real.double(), fake.double()
    return (manifold_coverage(fake, real, knn_radii(real, k)), manifold_coverage(real, fake, knn_radii(fake, k)))


def class_coverage(probabilities: torch.Tensor) -> dict[str, float]:
    """From classifier probabilities of the samples: entropy of the predicted-class histogram (in nats; log C
    when every class is equally frequent), the share of classes predicted less than half as often as
    expected, and the mean confidence (largest probability)."""
    C = probabilities.shape[1]
    counts = torch.bincount(probabilities.argmax(1), minlength=C).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item() + 0.0  # + 0.0 turns −0.0 into 0.0
    return {
        "class_entropy": entropy,
        "class_entropy_max": math.log(C),
        "classes_below_half": (p < 0.5 / C).double().mean().item(),
        "confidence": probabilities.max(1).values.mean().item(),
    }


class QualityMetrics:
    """Every quality number for a batch of generated images against a fixed real set, in one feature space.

    `feature_net` maps uint8 images (N, C, H, W) to features (its `forward`, with a `num_features` attribute,
    as torchmetrics expects) and to class logits (`logits`). The real set's statistics are computed once.
    """

    def __init__(self, feature_net: nn.Module, real_images: torch.Tensor, k: int = 3, kid_subsets: int = 10,
                 kid_subset_size: int = 1000, batch_size: int = 1000):
        self.net, self.k, self.batch_size = feature_net.eval(), k, batch_size
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.fid = FrechetInceptionDistance(feature=self.net, reset_real_features=False)
        self.kid = KernelInceptionDistance(feature=self.net, reset_real_features=False, subsets=kid_subsets,
                                           subset_size=min(kid_subset_size, len(real_images)))
        self.real_features = self.features(real_images)
        for images in real_images.split(batch_size):
            self.fid.update(images, real=True)
            self.kid.update(images, real=True)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(b) for b in images.split(self.batch_size)])

    @torch.no_grad()
    def __call__(self, fake_images: torch.Tensor) -> dict[str, float]:
        self.fid.reset()
        self.kid.reset()
        self.kid.subset_size = min(self.kid_subset_size, len(fake_images), len(self.real_features))
        for images in fake_images.split(self.batch_size):
            self.fid.update(images, real=False)
            self.kid.update(images, real=False)
        kid_mean, kid_std = self.kid.compute()
        fake_features = self.features(fake_images)
        precision, recall = precision_recall(self.real_features, fake_features, self.k)
        probabilities = torch.cat([self.net.logits(b).softmax(1) for b in fake_images.split(self.batch_size)])
        return {
            "fid": self.fid.compute().item(), "kid_mean": kid_mean.item(), "kid_std": kid_std.item(),
            "precision": precision, "recall": recall, **class_coverage(probabilities), "n": len(fake_images),
        }
