"""Quality metrics against independent references: scipy's Fréchet distance, and sets with known answers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from conftest import REAL_DATA, one_line_error
from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.metrics import feature_net as fn
from diffusion_lab.metrics import uncertainty
from diffusion_lab.metrics.feature_net.__main__ import main as feature_net_main
from diffusion_lab.metrics import quality
from diffusion_lab.metrics.quality import (InceptionFID, PrecomputedFeatures, QualityMetrics, class_accuracy,
                                           class_coverage, coverage, precision_recall)

SHIPPED_FEATURE_NETS = Path(__file__).resolve().parents[1] / "experiments" / "step_study" / "feature_nets"

linalg = pytest.importorskip("scipy.linalg")  # the independent reference for the Fréchet distance (test-only)


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


def test_coverage_matches_its_definition_and_exposes_mode_collapse():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(60, 4, generator=g), torch.randn(50, 4, generator=g)
    k = 5  # Naeem et al.: real i is covered when some fake lies within its k-th nearest real neighbour's distance
    covered = 0
    for i in range(len(real)):
        radius = sorted(float((real[i] - real[j]).norm()) for j in range(len(real)) if j != i)[k - 1]
        covered += any(float((real[i] - f).norm()) <= radius for f in fake)
    assert coverage(real, fake, k) == pytest.approx(covered / len(real))
    assert coverage(real, real.clone()) == 1.0 and coverage(real, real + 100.0) == 0.0
    collapsed = real[:1] + 0.01 * torch.randn(50, 4, generator=g)  # every fake near one real point
    assert precision_recall(real, collapsed)[0] == 1.0 and coverage(real, collapsed) < 0.1


def test_class_coverage_of_uniform_and_collapsed_predictions():
    uniform = torch.eye(10).repeat(50, 1)
    assert class_coverage(uniform) == {"class_entropy": pytest.approx(np.log(10)), "class_entropy_max": np.log(10),
                                       "classes_below_half": 0.0, "confidence": 1.0}
    collapsed = torch.full((100, 10), 0.05)
    collapsed[:, 3] = 0.55
    result = class_coverage(collapsed)
    assert result["class_entropy"] == 0.0 and result["classes_below_half"] == pytest.approx(0.9)
    assert result["confidence"] == pytest.approx(0.55)


def test_class_accuracy_counts_agreement_overall_and_per_class_asked():
    predicted = torch.tensor([0, 0, 1, 2, 2, 2])  # the classifier's top class for each sample
    asked = torch.tensor([0, 1, 1, 2, 2, 0])
    result = class_accuracy(torch.eye(4)[predicted], asked)  # 4 classes, class 3 never asked
    assert result["class_accuracy"] == pytest.approx(4 / 6)
    assert result["class_accuracy_per_class"] == [pytest.approx(1 / 2), pytest.approx(1 / 2), 1.0, None]


def test_quality_metrics_report_everything_and_kid_is_near_zero_for_one_distribution():
    torch.manual_seed(0)
    net = fn.FeatureNet(num_features=16).eval()
    real = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8)
    same = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8)
    black = torch.zeros(600, 1, 28, 28, dtype=torch.uint8)
    metrics = QualityMetrics(net, net.features(real), kid_subset_size=200)
    near, far = metrics(same), metrics(black)
    torch.manual_seed(1)  # the global stream plays no part: the same images score the same
    assert metrics(same) == near
    assert set(near) == {"fid", "fid_inf", "kid_mean", "kid_std", "precision", "recall", "coverage", "class_entropy",
                         "class_entropy_max", "classes_below_half", "confidence", "n", "fid_ci", "fid_inf_ci", "kid_ci",
                         "precision_ci", "recall_ci", "coverage_ci", "class_entropy_ci"}
    assert near["precision_ci"][0] <= near["precision"] <= near["precision_ci"][1] <= 1.0
    assert near["n"] == 600
    assert abs(near["kid_mean"]) < 3 * near["kid_std"] + 1e-4 and far["kid_mean"] > 10 * abs(near["kid_mean"])
    assert far["kid_ci"][0] > near["kid_ci"][1]
    assert far["fid"] > 10 * near["fid"] and far["precision"] == 0.0


def gaussian_fid_intervals(n: int, draws: int, d: int = 8, shift: float = 0.3, scale: float = 1.2, seed: int = 0):
    """(true Fréchet distance, [(low, high) of the 95 % interval of each draw]) for n real features ~ N(0, I) and
    n generated ones ~ N(shift, scale²·I) in d dimensions, from the statistic QualityMetrics bootstraps."""
    g = torch.Generator().manual_seed(seed)
    truth = d * shift ** 2 + d * (1 - scale) ** 2  # ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½)
    found = []
    for _ in range(draws):
        real = torch.randn(n, d, generator=g, dtype=torch.float64)
        fake = torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift
        fid = QualityMetrics(Identity(d), real).frechet_distance(fake)
        found.append(uncertainty.intervals({"fid": (fid, 0.0, float("inf"))}, n, n, resamples=200,
                                           seed=int(torch.randint(2**31, (1,), generator=g)))["fid_ci"])
    return truth, found


def test_the_fid_interval_covers_the_true_distance_and_narrows_as_one_over_root_n():
    truth, found = gaussian_fid_intervals(1000, 100)
    covered = sum(low <= truth <= high for low, high in found)
    assert covered >= 85, covered  # 95 % intervals: at least 85 of 100
    widths = {n: np.mean([high - low for low, high in gaussian_fid_intervals(n, 10, seed=n)[1]]) for n in (250, 4000)}
    assert 2.5 < widths[250] / widths[4000] < 6.5, widths  # 16 times the images: about a quarter of the width


def test_an_interval_of_the_same_images_is_the_same_and_of_a_constant_has_zero_width():
    share = uncertainty.share(torch.ones(50, dtype=torch.bool))
    statistics = {"share": (lambda real, fake: share(fake), 0.0, 1.0)}
    assert uncertainty.intervals(statistics, 30, 50) == {"share_ci": [1.0, 1.0]}
    fid = QualityMetrics(Identity(4), torch.randn(60, 4)).frechet_distance(torch.randn(60, 4) + 1)
    once, again = (uncertainty.intervals({"fid": (fid, 0.0, float("inf"))}, 60, 60) for _ in range(2))
    assert once == again and once["fid_ci"][0] < once["fid_ci"][1]


def test_a_paired_difference_of_a_setting_with_itself_is_exactly_zero_and_a_real_one_is_found():
    g = torch.Generator().manual_seed(0)
    real, noise = torch.randn(400, 4, generator=g), torch.randn(400, 4, generator=g)
    metrics = QualityMetrics(Identity(4), real)
    fids = {"a": metrics.frechet_distance(noise + 0.5), "a again": metrics.frechet_distance(noise + 0.5),
            "b": metrics.frechet_distance(noise + 0.6)}
    settings = {name: {"fid": (fid, 0.0, float("inf"))} for name, fid in fids.items()}
    _, (same, nearby) = uncertainty.bootstrap(settings, 400, 400, pairs=[("a again", "a"), ("b", "a")])
    assert (same["diff"], same["ci"], same["distinguishable"]) == (0.0, [0.0, 0.0], False)
    # The same noise shifted by 0.6 against 0.5 (ΔFID = 4·(0.36 − 0.25) = 0.44 in the population): the paired
    # images tell the two apart, although their unpaired intervals overlap.
    assert nearby["distinguishable"] and 0 < nearby["ci"][0] <= nearby["diff"] <= nearby["ci"][1]
    assert nearby["diff"] == pytest.approx(0.44, abs=0.1)
    apart = [uncertainty.intervals({"fid": (fids[k], 0.0, float("inf"))}, 400, 400)["fid_ci"] for k in ("a", "b")]
    assert apart[0][1] > apart[1][0]


def test_kid_of_one_block_equals_torchmetrics_unbiased_mmd():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g) * 1.1 + 0.1
    ours = QualityMetrics(Identity(16), real, kid_subset_size=300, resamples=0).score(fake, torch.eye(10)[:1].repeat(300, 1))
    theirs = KernelInceptionDistance(feature=PrecomputedFeatures(16), subsets=1, subset_size=300)
    theirs.update(real, real=True)
    theirs.update(fake, real=False)
    assert ours["kid_mean"] == pytest.approx(theirs.compute()[0].item(), rel=1e-4)
    assert ours["kid_std"] is None  # one block: no spread to report


def kid_statistic(metrics: QualityMetrics, fake: torch.Tensor):
    """KID of `fake` as the statistic of the resampling counts that QualityMetrics bootstraps (the mean of its
    blocks), with its range."""
    blocks = metrics.kid_terms(fake)
    return lambda real, fake_: float(np.mean(blocks(real, fake_))), -float("inf"), float("inf")


def test_the_kid_interval_covers_the_population_value():
    d, n = 8, 400
    g = torch.Generator().manual_seed(0)
    # The population value: the mean of 20 blocks of 1,000 (each an unbiased estimate).
    big = QualityMetrics(Identity(d), torch.randn(20_000, d, generator=g), kid_subset_size=1000)
    statistic, _, _ = kid_statistic(big, torch.randn(20_000, d, generator=g) * 1.2 + 0.1)
    truth = statistic(torch.ones(20_000), torch.ones(20_000))
    covered = 0
    for _ in range(40):
        metrics = QualityMetrics(Identity(d), torch.randn(n, d, generator=g))
        kid = kid_statistic(metrics, torch.randn(n, d, generator=g) * 1.2 + 0.1)
        low, high = uncertainty.intervals({"kid": kid}, n, n, seed=int(torch.randint(2**31, (1,), generator=g)))["kid_ci"]
        covered += low <= truth <= high
    assert covered >= 34, (covered, truth)  # 95 % intervals: at least 34 of 40


def test_fid_infinity_of_two_samples_of_one_gaussian_is_near_zero_while_fid_at_small_n_is_not():
    d, n = 8, 300
    g = torch.Generator().manual_seed(0)
    metrics = QualityMetrics(Identity(d), torch.randn(50_000, d, generator=g), resamples=0)
    ones = torch.ones(50_000), torch.ones(n)
    pairs = [[s(*ones) for s in metrics.frechet_distances(torch.randn(n, d, generator=g))] for _ in range(20)]
    fid, fid_inf = np.mean(pairs, axis=0)
    assert fid > 0.05 and abs(fid_inf) < 0.3 * fid, (fid, fid_inf)  # FID's bias at n = 300: 0.09 here


def test_replicates_kept_by_two_bootstrap_calls_pair_offline_as_in_one_call():
    g = torch.Generator().manual_seed(1)
    real, noise = torch.randn(300, 4, generator=g), torch.randn(200, 4, generator=g)
    metrics = QualityMetrics(Identity(4), real)
    settings = {name: {"fid": (metrics.frechet_distance(noise + shift), 0.0, float("inf"))}
                for name, shift in (("a", 0.5), ("b", 0.6))}
    _, (together,) = uncertainty.bootstrap(settings, 300, 200, resamples=50, pairs=[("b", "a")])
    kept = {name: uncertainty.bootstrap({name: statistics}, 300, 200, resamples=50, keep_replicates=True)[0][name]
            for name, statistics in settings.items()}  # two evaluate.py calls, each of one setting
    a, b = (kept[name]["replicates"]["fid"] for name in ("a", "b"))
    offline = uncertainty.paired_difference(b["estimate"], b["values"], a["estimate"], a["values"])
    assert offline == {key: together[key] for key in ("diff", "ci", "distinguishable")}  # exactly the same


def test_paired_differences_cover_every_metric_and_a_setting_against_itself_is_exactly_zero():
    g = torch.Generator().manual_seed(0)
    metrics = QualityMetrics(Identity(4), torch.randn(300, 4, generator=g), kid_subset_size=100)
    fake, probabilities = torch.randn(300, 4, generator=g), torch.softmax(torch.randn(300, 10, generator=g), 1)
    asked = torch.arange(300) % 10
    settings = {name: metrics.statistics(fake, probabilities, asked) for name in ("a", "a again")}
    cis, rows = uncertainty.bootstrap(settings, 300, 300, resamples=50, pairs=[("a again", "a")])
    assert {r["metric"] for r in rows} == {"fid", "fid_inf", "kid", "precision", "recall", "coverage", "class_entropy",
                                          "class_accuracy"}
    assert all((r["diff"], r["ci"], r["distinguishable"]) == (0.0, [0.0, 0.0], False) for r in rows)
    assert cis["a"] == cis["a again"] and set(cis["a"]) == {f"{r['metric']}_ci" for r in rows}


def test_the_floor_fid_is_real_against_real_at_the_same_n_and_cached(tiny_data, tmp_path):
    metrics = QualityMetrics.for_dataset("mnist", tiny_data, real_n=64, cache_dir=tmp_path, epochs=1, resamples=20)
    floor = metrics.floor(32)
    assert floor["floor_fid"] > 0 and floor["floor_fid_ci"][0] <= floor["floor_fid_ci"][1]
    (cached,) = tmp_path.glob("floor_fid-mnist-*-real64-n32-r20.json")
    cached.write_text(json.dumps({"floor_fid": 1.5}))
    assert metrics.floor(32) == {"floor_fid": 1.5}  # read from the cache, not computed again
    images, _ = load_split("mnist", tiny_data, train=True, download=False)
    assert metrics.score(*metrics.features(images[:32]))["floor_fid"] == 1.5  # every score carries its floor
    assert metrics.floor(10_000) == {}  # more than the 256 training images: no floor


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


def test_real_features_are_cached_beside_the_net(tiny_data, tmp_path, monkeypatch):
    net, record = fn.load_feature_net("mnist", tiny_data, tmp_path, epochs=1, batch_size=32)
    first = fn.real_features(net, record, tiny_data, 40, tmp_path)
    assert first.shape == (40, 128)
    assert (tmp_path / f"real_features-mnist-{record['fingerprint']}-n40.pt").exists()
    monkeypatch.setattr(fn, "load_split", lambda *a, **k: pytest.fail("computed again despite the cache"))
    assert torch.equal(fn.real_features(net, record, tiny_data, 40, tmp_path), first)


def test_feature_net_command_prints_the_record_of_the_cached_net(tiny_data, tmp_path, run_in_process):
    result = run_in_process(feature_net_main, "dataset=mnist", f"data_dir={tiny_data}", f"cache_dir={tmp_path}",
                            "epochs=1", "batch_size=32")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["settings"]["epochs"] == 1 and record["settings"]["batch_size"] == 32
    assert (tmp_path / f"feature_net-mnist-{record['fingerprint']}.pt").exists()
    error = one_line_error(run_in_process(feature_net_main, "dataset=cifar", f"data_dir={tiny_data}"))
    assert "dataset=cifar: no such option; allowed values are fashion_mnist, mnist" in error
    error = one_line_error(run_in_process(feature_net_main, "epoch=1"))
    assert "unknown key 'epoch' (did you mean epochs?)" in error


@pytest.fixture(scope="session")
def mnist_metrics(tmp_path_factory):
    """MNIST's own feature space and 2,000 test images: the step study's shipped feature net (the default
    settings), copied into a fresh cache so that its real features are computed here, not read or written there.
    Training that net is what test_feature_net_* check on tiny data; training it here on the real MNIST cost
    about two minutes of the suite's time."""
    if not (REAL_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("needs MNIST under DIFFUSION_LAB_DATA")
    cache = tmp_path_factory.mktemp("feature_cache")
    shipped, = SHIPPED_FEATURE_NETS.glob("feature_net-mnist-*.pt")
    shutil.copy(shipped, cache)
    return QualityMetrics.for_dataset("mnist", REAL_DATA, real_n=2000, resamples=0,  # no intervals here
                                      cache_dir=cache)


@pytest.mark.slow
def test_in_mnist_feature_space_train_is_close_to_test_and_noise_is_far(mnist_metrics):
    train, _ = load_split("mnist", REAL_DATA, train=True, download=False)
    noise = (torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    floor, ceiling = mnist_metrics(train[:2000]), mnist_metrics(noise)
    assert mnist_metrics.record["test_accuracy"] > 0.97
    # FID's bias at n = 2,000 keeps the floor above the 1.2 that n = 10,000 gives (see the README).
    assert floor["fid"] < 15 and ceiling["fid"] > 100 * floor["fid"], (floor["fid"], ceiling["fid"])
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6 and ceiling["precision"] == 0.0
    assert floor["class_entropy"] > 0.99 * np.log(10) and floor["classes_below_half"] == 0.0


@pytest.mark.slow
def test_fid_rises_monotonically_as_real_images_are_blended_with_noise(mnist_metrics):
    train, _ = load_split("mnist", REAL_DATA, train=True, download=False)
    real = train[:2000].float()
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 255
    fids = [mnist_metrics(((1 - w) * real + w * noise).round().to(torch.uint8))["fid"]
            for w in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_inception_fid_needs_a_weights_file():
    with pytest.raises(ConfigError, match="inception_weights=/nonexistent/w.pth: .*pip install"):
        InceptionFID("/nonexistent/w.pth", torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.slow
def test_inception_fid_with_a_local_weights_file(tmp_path, monkeypatch):
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    # A randomly initialised network in torch-fidelity's format stands in for the real weights (no network here).
    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *args, **kwargs: None)
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state_dict: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):  # keeps activations alive through depth
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    monkeypatch.undo()
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(12, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    inception = InceptionFID(tmp_path / "w.pth", real, batch_size=12)
    same, other, black = (inception(x) for x in (real.clone(), (torch.rand(12, 1, 28, 28, generator=g) * 255)
                                                  .to(torch.uint8), torch.zeros_like(real)))
    assert abs(same) < 1e-3 and 0 < other < black


def test_scores_at_different_n_on_one_metrics_object_equal_fresh_ones():
    """The real set's cached replicate terms depend on the block structure, which depends on n."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g) + 0.2
    probabilities = torch.softmax(torch.randn(600, 10, generator=g), 1)
    shared = QualityMetrics(Identity(4), real, kid_subset_size=200, resamples=20)
    for n in (100, 300, 600):
        fresh = QualityMetrics(Identity(4), real, kid_subset_size=200, resamples=20)
        assert shared.score(fake[:n], probabilities[:n]) == fresh.score(fake[:n], probabilities[:n])


def test_wandb_gets_each_metric_against_steps_and_against_nfe():
    from diffusion_lab.metrics.measure import log_to_wandb

    class Run:
        def __init__(self):
            self.logged = {}

        def log(self, values):
            self.logged |= values

    rows = [{"sampler": name, "steps": steps, "nfe": nfe, "fid": 10.0 / nfe, "kid_mean": 0.1, "precision": 0.5,
             "recall": 0.5, "coverage": 0.5} for name, steps, nfe in (("heun+karras", 3, 5), ("heun+karras", 5, 9),
                                                                      ("dpm_solver", 5, 5), ("dpm_solver", 9, 9))]
    run = Run()
    log_to_wandb(run, rows)
    metrics = ("fid", "kid_mean", "precision", "recall", "coverage")
    assert {f"eval/{m}_vs_{axis}" for m in metrics for axis in ("steps", "nfe")} | {"eval/results"} == set(run.logged)
    # against NFE the two solvers share their x values; against steps they do not (Heun: 3 and 5 for 5 and 9 NFE)
    assert run.logged["eval/fid_vs_nfe"].table.data == [[5, "heun+karras", 2.0], [9, "heun+karras", 10 / 9],
                                                        [5, "dpm_solver", 2.0], [9, "dpm_solver", 10 / 9]]
    assert [row[0] for row in run.logged["eval/fid_vs_steps"].table.data] == [3, 5, 9, 3, 5, 9]


def test_distances_are_computed_in_runs_of_a_fixed_size_whatever_n(monkeypatch):
    monkeypatch.setattr(quality, "DISTANCES_PER_CHUNK", 100)  # two rows at a time against 50 points
    real, fake = torch.randn(57, 4, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64)
    assert [len(rows) for rows in quality.row_chunks(real, len(fake))] == [2] * 28 + [1]
    direct = torch.cdist(real, real).kthvalue(4, dim=1).values  # k = 3 and the point itself
    radii = quality.knn_radii(real, 3)
    torch.testing.assert_close(radii, direct, rtol=1e-12, atol=1e-12)  # cdist's float sums differ by row count
    assert torch.equal(quality.inside_manifold(fake, real, radii), (torch.cdist(fake, real) <= radii[None]).any(1))
    assert torch.equal(quality.covered(real, fake, k=3), torch.cdist(real, fake).amin(1) <= radii)
