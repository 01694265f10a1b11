"""Sample quality in a feature space: FID and KID (torchmetrics), improved precision and recall, coverage, class
coverage;
and, optionally, true Inception-v3 FID."""

import math
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from diffusion_lab.errors import ConfigError
from diffusion_lab.metrics import uncertainty
from diffusion_lab.metrics.feature_net import load_feature_net, real_features


@torch.no_grad()
def knn_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself
    return torch.cat(radii)


@torch.no_grad()
def inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor,
                    chunk: int = 2048) -> torch.Tensor:
    """For each of `queries`: whether it lies inside at least one ball (support point, its k-NN radius)."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], support)
        inside.append((d <= radii[None]).any(1))
    return torch.cat(inside)


def manifold_indicators(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved precision and recall's per-image terms (Kynkäänniemi et al. 2019): whether each fake feature lies
    inside the real manifold (k-NN balls around real features), and each real one inside the fake manifold."""
    real, fake = real.double(), fake.double()
    return inside_manifold(fake, real, knn_radii(real, k)), inside_manifold(real, fake, knn_radii(fake, k))


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision (the share of fake features inside the real manifold) and recall (the share of real
    ones inside the fake manifold)."""
    in_real, in_fake = manifold_indicators(real, fake, k)
    return in_real.float().mean().item(), in_fake.float().mean().item()


@torch.no_grad()
def covered(real: torch.Tensor, fake: torch.Tensor, k: int = 5, chunk: int = 2048) -> torch.Tensor:
    """Coverage's per-image term (Naeem et al. 2020): whether each real feature's k-NN ball (among the real
    ones) holds at least one fake feature."""
    real, fake = real.double(), fake.double()
    radii = knn_radii(real, k)
    nearest_fake = torch.cat([torch.cdist(real[s:s + chunk], fake).amin(1) for s in range(0, len(real), chunk)])
    return nearest_fake <= radii


def coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> float:
    """Coverage: the share of real features whose k-NN ball holds a fake one. Unlike recall it ignores outlying
    fakes, so one stray sample cannot inflate it."""
    return covered(real, fake, k).double().mean().item()


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


def class_accuracy(probabilities: torch.Tensor, asked: torch.Tensor) -> dict:
    """How often the classifier's most probable class is the class each sample was asked for: over all samples
    (`class_accuracy`) and per class asked (`class_accuracy_per_class`, index c; None for a class never asked)."""
    hits = (probabilities.argmax(1) == asked).double()
    per_class = [hits[asked == c].mean().item() if (asked == c).any() else None for c in range(probabilities.shape[1])]
    return {"class_accuracy": hits.mean().item(), "class_accuracy_per_class": per_class}


class PrecomputedFeatures(nn.Module):
    """An identity "feature extractor": torchmetrics' FID and KID then take features computed once elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class QualityMetrics:
    """Every quality number for a set of generated images against a fixed real set, in one feature space.

    `feature_net` maps uint8 images (N, C, H, W) to features (`features`, `num_features` wide) and features
    to class logits (`head`); `real_features` are those of the real set (see `real_features`, which caches
    them). Each image set goes through the network once; FID and KID are torchmetrics' on those features.
    """

    def __init__(self, feature_net: nn.Module, real_features: torch.Tensor, k: int = 3, kid_subsets: int = 10,
                 kid_subset_size: int = 1000, batch_size: int = 1000, record: dict | None = None,
                 resamples: int = 200):
        self.net, self.k, self.batch_size, self.record = feature_net.eval(), k, batch_size, record
        self.resamples = resamples  # bootstrap replicates behind each interval; 0: no intervals
        self._real_moments: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.kid_subset_size = kid_subset_size
        self.real_features = real_features.detach().cpu()
        given = PrecomputedFeatures(real_features.shape[1])
        # Never synced across processes: under DDP every rank scores the same gathered features.
        self.fid = FrechetInceptionDistance(feature=given, reset_real_features=False, sync_on_compute=False)
        self.kid = KernelInceptionDistance(feature=given, reset_real_features=False, subsets=kid_subsets,
                                           subset_size=min(kid_subset_size, len(real_features)),
                                           sync_on_compute=False)
        self.fid.update(self.real_features, real=True)
        self.kid.update(self.real_features, real=True)

    @classmethod
    def for_dataset(cls, dataset: str, data_dir: str | Path, real_n: int = 10_000, cache_dir: str | Path | None = None,
                    epochs: int | None = None, device: torch.device | str = "cpu", **kwargs) -> "QualityMetrics":
        """The metrics of `dataset`: its feature net (trained and cached when missing; `record` describes it) on
        `device`, against the cached features of its first `real_n` test images."""
        net, record = load_feature_net(dataset, data_dir, cache_dir, device, epochs=epochs)
        real = real_features(net, record, data_dir, real_n, cache_dir)
        return cls(net.to(device), real, record=record, **kwargs)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, class probabilities) of uint8 images, on the images' device."""
        features = torch.cat([self.net.features(b) for b in images.split(self.batch_size)])
        return features, self.net.head(features).softmax(1)

    @torch.no_grad()
    def score(self, features: torch.Tensor, probabilities: torch.Tensor, asked: torch.Tensor | None = None) -> dict:
        """FID, KID, precision/recall, coverage and class coverage of generated images given their features, and
        how often the classifier finds the class each was `asked` for (when given); each but KID (which has its
        subsets' std) with its 95 % bootstrap interval, `<metric>_ci`."""
        features, probabilities = features.cpu(), probabilities.cpu()
        self.fid.reset()
        self.kid.reset()
        self.kid.subset_size = min(self.kid_subset_size, len(features), len(self.real_features))
        self.fid.update(features, real=False)
        self.kid.update(features, real=False)
        with torch.random.fork_rng(devices=[]):  # KID's random subsets: the same for the same features
            torch.manual_seed(0)
            kid_mean, kid_std = self.kid.compute()
        in_real, in_fake = manifold_indicators(self.real_features, features, self.k)
        is_covered = covered(self.real_features, features)
        result = {
            "fid": self.fid.compute().item(), "kid_mean": kid_mean.item(), "kid_std": kid_std.item(),
            "precision": in_real.float().mean().item(), "recall": in_fake.float().mean().item(),
            "coverage": is_covered.double().mean().item(), **class_coverage(probabilities), "n": len(features),
        }
        predicted, num_classes = probabilities.argmax(1), probabilities.shape[1]
        precision, recall, coverage_ = (uncertainty.share(x) for x in (in_real, in_fake, is_covered))
        entropy = uncertainty.histogram_entropy(predicted, num_classes)
        statistics = {  # name: (statistic of the (real, generated) resampling counts, its range)
            "fid": (self.frechet_distance(features), 0.0, float("inf")),
            "precision": (lambda real, fake: precision(fake), 0.0, 1.0),
            "recall": (lambda real, fake: recall(real), 0.0, 1.0),
            "coverage": (lambda real, fake: coverage_(real), 0.0, 1.0),
            "class_entropy": (lambda real, fake: entropy(fake), 0.0, result["class_entropy_max"]),
        }
        if asked is not None:
            result |= class_accuracy(probabilities, asked.cpu())
            hits = uncertainty.share(predicted == asked.cpu())
            statistics["class_accuracy"] = (lambda real, fake: hits(fake), 0.0, 1.0)
        if self.resamples:
            result |= uncertainty.intervals(statistics, len(self.real_features), len(features), self.resamples)
        return result

    def frechet_distance(self, features: torch.Tensor) -> uncertainty.Statistic:
        """FID of `features` against the real set, each image counted as often as its resampling count (the
        statistic the bootstrap replicates)."""
        fake = features.double()
        return lambda real_counts, fake_counts: uncertainty.frechet_distance(*self.real_moments(real_counts),
                                                                            *uncertainty.moments(fake, fake_counts))

    def real_moments(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The real set's weighted moments, computed once per resampling: a replicate passes the same counts to
        the FID of every setting it compares."""
        if self._real_moments is None or self._real_moments[0] is not counts:
            self._real_moments = (counts, uncertainty.moments(self.real_features, counts))
        return self._real_moments[1]

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        return self.score(*self.features(images))


class InceptionFID:
    """True Inception-v3 FID (torchmetrics with torch-fidelity's network) against a fixed real set, for users who
    have the weights file locally (torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`). Grayscale
    images are repeated to RGB; torchmetrics resizes them to 299×299."""

    def __init__(self, weights: str | Path, real_images: torch.Tensor, batch_size: int = 100,
                 device: torch.device | str = "cpu"):
        try:
            torch.load(weights, map_location="cpu", weights_only=True)  # tensors only, before torch-fidelity's
            self.fid = FrechetInceptionDistance(feature=2048, reset_real_features=False, sync_on_compute=False,
                                                feature_extractor_weights_path=str(weights)).to(device)
        except (OSError, ModuleNotFoundError, RuntimeError) as err:
            raise ConfigError(f"inception_weights={weights}: {str(err).splitlines()[0]} (needs torch-fidelity: "
                              "pip install -e '.[inception]', and its Inception-v3 weights file)") from err
        self.batch_size, self.device = batch_size, device
        self._update(real_images, real=True)

    def _update(self, images: torch.Tensor, real: bool) -> None:
        for batch in images.split(self.batch_size):
            self.fid.update(batch.to(self.device).expand(-1, 3, -1, -1), real=real)

    @torch.no_grad()
    def __call__(self, fake_images: torch.Tensor) -> float:
        self.fid.reset()
        self._update(fake_images, real=False)
        return self.fid.compute().item()
