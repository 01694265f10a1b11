"""experiments/step_study/variance_probe.py on the shipped learned-variance model: the σ respaced DDPM adds at the
last noisy steps, against the closed forms of the respaced chain."""

import importlib
import math

import numpy as np

from conftest import ROOT


def test_the_probe_reports_the_respaced_chains_variances_and_the_learned_sigma_between_them(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "step_study"))  # the probe imports summarize beside it
    variance_probe = importlib.import_module("variance_probe")
    rows = variance_probe.probe("mnist_learned", nfe=10, n=4, last=3)
    assert [r["spacing"] for r in rows] == ["leading"] * 3  # the headline pilot's best for DDPM
    assert [r["t"] for r in rows] == [300, 200, 100]  # leading at K = 10: 900, 800, ..., 100, then 0 without noise
    alphas_cumprod = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    for r in rows:
        a, a_prev = alphas_cumprod[r["t"]], alphas_cumprod[r["t"] - 100]
        beta = 1 - a / a_prev
        assert math.isclose(r["fixed_large"], math.sqrt(beta), rel_tol=1e-5)
        assert math.isclose(r["fixed_small"], math.sqrt((1 - a_prev) / (1 - a) * beta), rel_tol=1e-5)
        assert r["fixed_small"] < r["learned"] < r["fixed_large"], r
    # At the step that lands on t = 0 the model adds about three times the posterior's σ (noise never removed)
    assert rows[-1]["learned"] > 2 * rows[-1]["fixed_small"]
