"""Sample quality in a feature space: FID (torchmetrics) and FID∞, KID, improved precision and recall, coverage,
class coverage, FID's real-against-real floor; and, optionally, true Inception-v3 FID."""

import json
import math
from statistics import mean
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.files import write_json_atomic
from diffusion_lab.memory import release_freed_memory
from diffusion_lab.metrics import uncertainty
from diffusion_lab.metrics.feature_net import cache_dir_for, load_feature_net, real_features

COVERAGE_K = 5  # coverage's k-NN balls (Naeem et al. 2020)
FID_INF_PARTS = 3  # FID∞ fits the FIDs of a third, two thirds and all of the images
FID_INF_MIN_RATIO = 1  # FID∞ needs a third of the images to number at least this many times the features


DISTANCES_PER_CHUNK = 2**24  # pairwise distances held at once: 128 MiB in float64, whatever n is


def row_chunks(queries: torch.Tensor, columns: int) -> tuple[torch.Tensor, ...]:
    """`queries` in runs of rows whose distances to `columns` points fit DISTANCES_PER_CHUNK: memory stays flat
    as n grows (50,000 samples against 10,000 real images)."""
    return queries.split(max(1, DISTANCES_PER_CHUNK // max(columns, 1)))


@torch.no_grad()
def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point."""
    return torch.cat([torch.cdist(rows, features).kthvalue(k + 1, dim=1).values  # the 1st is the point itself
                      for rows in row_chunks(features, len(features))])


@torch.no_grad()
def inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each of `queries`: whether it lies inside at least one ball (support point, its k-NN radius)."""
    return torch.cat([(torch.cdist(rows, support) <= radii[None]).any(1) for rows in row_chunks(queries, len(support))])


def manifold_indicators(real: torch.Tensor, fake: torch.Tensor, k: int = 3,
                        real_radii: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved precision and recall's per-image terms (Kynkäänniemi et al. 2019): whether each fake feature lies
    inside the real manifold (k-NN balls around real features; their radii may be given), and each real one
    inside the fake manifold."""
    real, fake = real.double(), fake.double()
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    return inside_manifold(fake, real, real_radii), inside_manifold(real, fake, knn_radii(fake, k))


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision (the share of fake features inside the real manifold) and recall (the share of real
    ones inside the fake manifold)."""
    in_real, in_fake = manifold_indicators(real, fake, k)
    return in_real.float().mean().item(), in_fake.float().mean().item()


@torch.no_grad()
def covered(real: torch.Tensor, fake: torch.Tensor, k: int = COVERAGE_K,
            radii: torch.Tensor | None = None) -> torch.Tensor:
    """Coverage's per-image term (Naeem et al. 2020): whether each real feature's k-NN ball (among the real
    ones; its radii may be given) holds at least one fake feature."""
    real, fake = real.double(), fake.double()
    radii = knn_radii(real, k) if radii is None else radii
    nearest_fake = torch.cat([torch.cdist(rows, fake).amin(1) for rows in row_chunks(real, len(fake))])
    return nearest_fake <= radii


def coverage(real: torch.Tensor, fake: torch.Tensor, k: int = COVERAGE_K) -> float:
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


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KID's kernel (x·y/d + 1)³ (Bińkowski et al. 2018, as torchmetrics' defaults)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def kernel_blocks(n: int, block_size: int) -> list[slice]:
    """KID's blocks: B = max(1, n // block_size) disjoint runs of n // B consecutive images."""
    count = max(1, n // block_size)
    m = n // count
    return [slice(b * m, (b + 1) * m) for b in range(count)]


def within(kernel: torch.Tensor, counts: torch.Tensor) -> float:
    """The mean kernel value over pairs of two different images of one set, image i drawn `counts[i]` times: a
    resampling's copies of one image are never paired with each other, so the replicate has no bias from them."""
    c = counts.double()
    pairs = float(c.sum() ** 2 - (c ** 2).sum())
    if not pairs:  # a replicate of a tiny block can hold one image only
        return 0.0
    cf = counts.float()
    return (float(c @ (kernel @ cf).double()) - float((c ** 2) @ kernel.diagonal().double())) / pairs


def across(kernel: torch.Tensor, counts_rows: torch.Tensor, counts_columns: torch.Tensor) -> float:
    """The mean kernel value between the draws of two sets."""
    pairs = float(counts_rows.sum() * counts_columns.sum())
    if not pairs:
        return 0.0
    return float(counts_rows.float().double() @ (kernel @ counts_columns.float()).double()) / pairs


class QualityMetrics:
    """Every quality number for a set of generated images against a fixed real set, in one feature space.

    `feature_net` maps uint8 images (N, C, H, W) to features (`features`, `num_features` wide) and features
    to class logits (`head`); `real_features` are those of the real set (see `real_features`, which caches
    them). Each image set goes through the network once; FID is torchmetrics' on those features. Each number
    is a statistic of the (real, generated) resampling counts, so the bootstrap gives its interval and paired
    differences without scoring an image twice (`statistics`, `metrics.uncertainty`).
    """

    def __init__(self, feature_net: nn.Module, real_features: torch.Tensor, k: int = 3, kid_subset_size: int = 1000,
                 batch_size: int = 1000, record: dict | None = None, resamples: int = 200,
                 floor_source: dict | None = None):
        self.net, self.k, self.batch_size, self.record = feature_net.eval(), k, batch_size, record
        self.resamples = resamples  # bootstrap replicates behind each interval; 0: no intervals
        self.kid_subset_size = kid_subset_size
        self.floor_source = floor_source  # {dataset, data_dir, cache_dir}: where real-against-real FIDs come from
        self.real_features = real_features.detach().cpu()
        self._real = OrderedDict()  # resampling counts -> the real set's moments, root and KID terms
        self._real_kernels: dict[tuple, list[torch.Tensor]] = {}
        self._real_radii: dict[int, torch.Tensor] = {}
        # Never synced across processes: under DDP every rank scores the same gathered features.
        self.fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real_features.shape[1]),
                                            reset_real_features=False, sync_on_compute=False)
        self.fid.update(self.real_features, real=True)

    @classmethod
    def for_dataset(cls, dataset: str, data_dir: str | Path, real_n: int = 10_000, cache_dir: str | Path | None = None,
                    epochs: int | None = None, device: torch.device | str = "cpu", **kwargs) -> "QualityMetrics":
        """The metrics of `dataset`: its feature net (trained and cached when missing; `record` describes it) on
        `device`, against the cached features of its first `real_n` test images."""
        net, record = load_feature_net(dataset, data_dir, cache_dir, device, epochs=epochs)
        real = real_features(net, record, data_dir, real_n, cache_dir)
        source = {"dataset": dataset, "data_dir": data_dir, "cache_dir": cache_dir}
        return cls(net.to(device), real, record=record, floor_source=source, **kwargs)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, class probabilities) of uint8 images, on the images' device."""
        features = []
        for batch in images.split(self.batch_size):
            features.append(self.net.features(batch))
            release_freed_memory()  # peak memory flat in n
        features = torch.cat(features)
        return features, self.net.head(features).softmax(1)

    @torch.no_grad()
    def score(self, features: torch.Tensor, probabilities: torch.Tensor, asked: torch.Tensor | None = None,
              intervals: bool = True) -> dict:
        """FID and its n-independent extrapolation FID∞, KID, precision/recall, coverage and class coverage of
        generated images given their features, how often the classifier finds the class each was `asked` for
        (when given), and FID's floor at this n; with `intervals` (and `resamples`), each with its 95 %
        bootstrap interval, `<metric>_ci`."""
        features, probabilities = features.cpu(), probabilities.cpu()
        self.fid.reset()
        self.fid.update(features, real=False)
        kid_blocks = self.kid_terms(features)
        statistics = self.statistics(features, probabilities, asked, kid_blocks)
        ones_real, ones_fake = torch.ones(len(self.real_features)), torch.ones(len(features))
        per_block = kid_blocks(ones_real, ones_fake)
        result = {
            "fid": self.fid.compute().item(),
            "fid_inf": statistics["fid_inf"][0](ones_real, ones_fake) if "fid_inf" in statistics else None,
            "kid_mean": mean(per_block),
            "kid_std": float(torch.tensor(per_block).std()) if len(per_block) > 1 else None,
            **{name: statistics[name][0](ones_real, ones_fake) for name in ("precision", "recall", "coverage")},
            **class_coverage(probabilities), "n": len(features),
        }
        if asked is not None:
            result |= class_accuracy(probabilities, asked.cpu())
        if intervals and self.resamples:
            result |= uncertainty.intervals(statistics, len(self.real_features), len(features), self.resamples)
        return result | self.floor(len(features))

    def statistics(self, features: torch.Tensor, probabilities: torch.Tensor, asked: torch.Tensor | None = None,
                   kid_blocks: Callable | None = None) -> dict[str, tuple[uncertainty.Statistic, float, float]]:
        """Each metric as a statistic of the (real, generated) resampling counts, with the range it can take:
        what the bootstrap resamples (`uncertainty.bootstrap`). FID∞ needs 3 images per feature dimension."""
        features, probabilities = features.cpu(), probabilities.cpu()
        in_real, in_fake = manifold_indicators(self.real_features, features, self.k, self.real_radii(self.k))
        precision, recall, covered_ = (uncertainty.share(x) for x in (in_real, in_fake,
                                                                    covered(self.real_features, features,
                                                                            radii=self.real_radii(COVERAGE_K))))
        predicted, num_classes = probabilities.argmax(1), probabilities.shape[1]
        entropy = uncertainty.histogram_entropy(predicted, num_classes)
        kid_blocks = kid_blocks or self.kid_terms(features)
        fid, fid_inf = self.frechet_distances(features)
        statistics = {
            "fid": (fid, 0.0, float("inf")),
            "fid_inf": (fid_inf, -float("inf"), float("inf")),
            "kid": (lambda real, fake: mean(kid_blocks(real, fake)), -float("inf"), float("inf")),
            "precision": (lambda real, fake: precision(fake), 0.0, 1.0),
            "recall": (lambda real, fake: recall(real), 0.0, 1.0),
            "coverage": (lambda real, fake: covered_(real), 0.0, 1.0),
            "class_entropy": (lambda real, fake: entropy(fake), 0.0, math.log(num_classes)),
        }
        if asked is not None:
            hits = uncertainty.share(predicted == asked.cpu())
            statistics["class_accuracy"] = (lambda real, fake: hits(fake), 0.0, 1.0)
        if len(features) < FID_INF_PARTS * FID_INF_MIN_RATIO * features.shape[1]:
            del statistics["fid_inf"]
        return statistics

    def real_radii(self, k: int) -> torch.Tensor:
        """The real features' k-NN radii, computed once: the most costly part of precision, recall and coverage."""
        if k not in self._real_radii:
            self._real_radii[k] = knn_radii(self.real_features.double(), k)
        return self._real_radii[k]

    def frechet_distance(self, features: torch.Tensor) -> uncertainty.Statistic:
        """FID of `features` against the real set, each image counted as often as its resampling count (the
        statistic the bootstrap replicates)."""
        return self.frechet_distances(features)[0]

    def frechet_distance_infinity(self, features: torch.Tensor) -> uncertainty.Statistic:
        """FID∞ (Chong & Forsyth 2020) of `features`: see `frechet_distances`."""
        return self.frechet_distances(features)[1]

    def frechet_distances(self, features: torch.Tensor,
                          parts: int = FID_INF_PARTS) -> tuple[uncertainty.Statistic, uncertainty.Statistic]:
        """(FID, FID∞) of `features` against the real set as statistics of the resampling counts; a replicate
        computes the FIDs of the first 1, 2, …, `parts` equal runs of the images once for both.

        FID∞ (Chong & Forsyth 2020) extrapolates those FIDs linearly in 1/n to n → ∞: FID's bias falls as 1/n,
        so FID∞ can compare sets scored at different n. The real set stays whole (real_n images), so the bias
        it brings remains in FID∞."""
        fake = features.double()
        runs = [slice(len(fake) * p // parts, len(fake) * (p + 1) // parts) for p in range(parts)]
        last: dict = {}

        def sums(real_counts: torch.Tensor, fake_counts: torch.Tensor) -> dict:
            """The real set's terms and each run's weighted sums (Σc, Σc·x, Σc·xxᵀ) of the generated features
            for this resampling: computed once for both statistics."""
            key = (hash(real_counts.numpy().tobytes()), hash(fake_counts.numpy().tobytes()))
            if last.get("key") != key:
                c = fake_counts.double()
                parts_sums = [(c[r].sum(), c[r] @ fake[r], (fake[r] * c[r, None]).T @ fake[r]) for r in runs]
                last.clear()
                last.update(key=key, real=self.real_terms(real_counts),
                            cumulative=[torch.stack(x).cumsum(0) for x in zip(*parts_sums)])
            return last

        def fid_of_first(p: int, terms: dict) -> float:
            """FID of the images of runs 0 … p against the real set (once per resampling)."""
            if p not in terms.setdefault("fids", {}):
                count, first, second = (x[p] for x in terms["cumulative"])
                mean, cov = first / count, (second - torch.outer(first, first) / count) / (count - 1)
                terms["fids"][p] = uncertainty.frechet_distance(*terms["real"]["moments"], mean, cov,
                                                                root1=terms["real"]["root"])
            return terms["fids"][p]

        def fid(real_counts: torch.Tensor, fake_counts: torch.Tensor) -> float:
            return fid_of_first(parts - 1, sums(real_counts, fake_counts))

        def fid_inf(real_counts: torch.Tensor, fake_counts: torch.Tensor) -> float:
            terms = sums(real_counts, fake_counts)
            sizes = [float(count) for count in terms["cumulative"][0]]
            return uncertainty.intercept_in_inverse_n(sizes, [fid_of_first(p, terms) for p in range(parts)])
        return fid, fid_inf

    def kid_terms(self, features: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], list[float]]:
        """KID per block: the unbiased MMD² with the polynomial kernel between real block b and generated block b
        (disjoint blocks of about `kid_subset_size` images, `kernel_blocks`), as a statistic of the resampling
        counts. The kernel matrices are computed once; a replicate costs three matrix-vector products a block."""
        blocks = kernel_blocks(min(len(features), len(self.real_features)), self.kid_subset_size)
        fake = features.float()
        fake_kernels = [(polynomial_kernel(fake[b], fake[b]), polynomial_kernel(fake[b], self.real_features[b].float()))
                        for b in blocks]

        def terms(real_counts: torch.Tensor, fake_counts: torch.Tensor) -> list[float]:
            real_within = self.real_terms(real_counts, blocks)["kid"]
            return [real_within[i] + within(k_ff, fake_counts[b]) - 2 * across(k_fr, fake_counts[b], real_counts[b])
                    for i, (b, (k_ff, k_fr)) in enumerate(zip(blocks, fake_kernels))]
        return terms

    def real_terms(self, counts: torch.Tensor, blocks: list[slice] | None = None) -> dict:
        """What each resampling of the real set contributes, computed once per resampling and reused by every
        setting a replicate scores: its moments and their square root (FID) and, for `blocks`, its KID terms."""
        key = hash(counts.numpy().tobytes())
        if key not in self._real:
            mean, cov = uncertainty.moments(self.real_features, counts)
            self._real[key] = {"moments": (mean, cov), "root": uncertainty.psd_sqrt(cov)}
            while len(self._real) > self.resamples + 8:  # room for every replicate and the unresampled sets
                self._real.popitem(last=False)
        terms = self._real[key]
        if blocks is not None:
            signature = (blocks[0].stop, len(blocks))  # the block size and count: the KID terms differ with n
            if signature not in self._real_kernels:
                real = self.real_features.float()
                self._real_kernels[signature] = [polynomial_kernel(real[b], real[b]) for b in blocks]
            kid = terms.setdefault("kid", {})
            if signature not in kid:
                kid[signature] = [within(k, counts[b]) for k, b in zip(self._real_kernels[signature], blocks)]
            return terms | {"kid": kid[signature]}
        return terms

    def floor(self, n: int) -> dict:
        """`floor_fid` and `floor_fid_ci`: the FID of n training images against the real (test) set, what a
        model that draws from the data distribution itself would score at this n; computed once per
        (data set, feature net, real set, n) and cached beside the feature net. Empty without a data set
        (`floor_source`) or where it has fewer than n training images."""
        if self.floor_source is None:
            return {}
        source = self.floor_source
        directory = cache_dir_for(source["data_dir"], source["cache_dir"])
        path = directory / (f"floor_fid-{source['dataset']}-{self.record['fingerprint']}-real{len(self.real_features)}"
                            f"-n{n}-r{self.resamples}.json")
        if path.exists():
            return json.loads(path.read_text())
        images, _ = load_split(source["dataset"], source["data_dir"], train=True, download=False)
        if len(images) < n:
            return {}
        features, _ = self.features(images[:n].to(next(self.net.parameters()).device))
        fid = self.frechet_distance(features.cpu())
        floor = {"floor_fid": fid(torch.ones(len(self.real_features)), torch.ones(n))}
        if self.resamples:
            floor["floor_fid_ci"] = uncertainty.intervals({"fid": (fid, 0.0, float("inf"))}, len(self.real_features),
                                                          n, self.resamples)["fid_ci"]
        write_json_atomic(path, floor)
        return floor

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
