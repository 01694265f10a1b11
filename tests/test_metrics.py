"""Quality metrics against independent references: scipy's Fréchet distance, and sets with known answers."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from diffusion_lab.metrics import feature_net as fn
from diffusion_lab.metrics.quality import QualityMetrics, class_coverage, precision_recall


class Identity(nn.Module):
    """Features are the inputs themselves: FID and KID of plain Gaussian vectors."""

    def __init__(self, d):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x.float()


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2(Σ_a Σ_b)^½), the reference formula (Heusel et al. 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.5, 1.0), (0.2, 2.0)])
def test_torchmetrics_frechet_distance_equals_scipy(shift, scale):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 8, generator=g, dtype=torch.float64)
    b = scale * torch.randn(2000, 8, generator=g, dtype=torch.float64) + shift
    fid = FrechetInceptionDistance(feature=Identity(8))
    fid.update(a, real=True)
    fid.update(b, real=False)
    assert fid.compute().item() == pytest.approx(scipy_frechet(a.numpy(), b.numpy()), rel=1e-3, abs=1e-4)


def test_precision_and_recall_are_one_for_identical_sets_and_zero_for_disjoint_ones():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 16, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # Same distribution, new draws: with k = 3 and 500 points in 16 dimensions the k-NN balls cover ~80%.
    close = precision_recall(real, torch.randn(500, 16, generator=g))
    assert min(close) > 0.7


def test_class_coverage_of_uniform_and_collapsed_predictions():
    uniform = torch.eye(10).repeat(50, 1)
    assert class_coverage(uniform) == {"class_entropy": pytest.approx(np.log(10)), "class_entropy_max": np.log(10),
                                       "classes_below_half": 0.0, "confidence": 1.0}
    collapsed = torch.full((100, 10), 0.05)
    collapsed[:, 3] = 0.55
    result = class_coverage(collapsed)
    assert result["class_entropy"] == 0.0 and result["classes_below_half"] == pytest.approx(0.9)
    assert result["confidence"] == pytest.approx(0.55)


def test_quality_metrics_report_everything_and_kid_is_near_zero_for_one_distribution():
    torch.manual_seed(0)
    net = fn.FeatureNet(num_features=16).eval()
    real = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8)
    same = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8)
    black = torch.zeros(600, 1, 28, 28, dtype=torch.uint8)
    metrics = QualityMetrics(net, real, kid_subsets=20, kid_subset_size=200)
    near, far = metrics(same), metrics(black)
    assert set(near) == {"fid", "kid_mean", "kid_std", "precision", "recall", "class_entropy", "class_entropy_max",
                         "classes_below_half", "confidence", "n"}
    assert near["n"] == 600
    assert abs(near["kid_mean"]) < 3 * near["kid_std"] + 1e-4 and far["kid_mean"] > 10 * abs(near["kid_mean"])
    assert far["fid"] > 10 * near["fid"] and far["precision"] == 0.0


def test_feature_net_is_trained_once_then_loaded_from_its_cache(tiny_data, tmp_path, monkeypatch):
    settings = dict(epochs=1, batch_size=32)
    net, record = fn.load_feature_net("mnist", tiny_data, tmp_path, **settings)
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["settings"]["epochs"] == 1
    (cached,) = tmp_path.glob("feature_net-mnist-*.pt")
    assert record["fingerprint"] in cached.name
    torch.load(cached, weights_only=True)  # a plain state dict and record, nothing to unpickle

    def no_training(*args, **kwargs):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(fn, "train_feature_net", no_training)
    again, record_again = fn.load_feature_net("mnist", tiny_data, tmp_path, **settings)
    assert record_again == record
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with pytest.raises(AssertionError, match="trained again"):  # other settings, another fingerprint
        fn.load_feature_net("mnist", tiny_data, tmp_path, epochs=2, batch_size=32)
