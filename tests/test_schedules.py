"""Schedules and the Gaussian diffusion against closed forms, sampling statistics and diffusers."""

import math

import pytest
import torch

from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas, linear_betas, sigmoid_betas
from diffusion_lab.diffusion.timesteps import TimestepSampler
from diffusion_lab.errors import ConfigError


@pytest.mark.parametrize("T", [1000, 200])
def test_linear_betas_are_ddpm_rescaled_by_1000_over_T(T):
    betas = linear_betas(T)
    scale = 1000 / T
    assert betas[0].item() == pytest.approx(1e-4 * scale, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02 * scale, rel=1e-12)
    steps = betas.diff()
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) * scale / (T - 1)), rtol=1e-9)


@pytest.mark.parametrize("T", [1000, 200])
def test_cosine_alphas_cumprod_follow_the_closed_form(T):
    alphas_cumprod = torch.cumprod(1 - cosine_betas(T), 0)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda u: math.cos((u / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    closed = torch.tensor([f(u) / f(0) for u in t.tolist()], dtype=torch.float64)
    unclipped = cosine_betas(T) < 0.999  # only the last beta reaches the clip
    assert unclipped[:-1].all()
    assert torch.allclose(alphas_cumprod[:-1], closed[:-1], rtol=1e-9, atol=1e-12)
    assert cosine_betas(T)[-1].item() == pytest.approx(0.999)


def test_sigmoid_schedule_decreases_to_noise():
    alphas_cumprod = torch.cumprod(1 - sigmoid_betas(1000), 0)
    assert (alphas_cumprod.diff() < 0).all()
    assert alphas_cumprod[-1] < 1e-2


def reference_scheduler(diffusers, schedule: str, T: int):
    if schedule == "linear":
        return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear",
                             beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
    return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 200])
def test_schedule_quantities_match_diffusers(diffusers, schedule, T):
    ours = GaussianDiffusion(SCHEDULES[schedule](T))
    ref = reference_scheduler(diffusers, schedule, T)
    assert torch.allclose(ours.betas, ref.betas, rtol=1e-5, atol=1e-7)
    assert torch.allclose(ours.alphas_cumprod, ref.alphas_cumprod, rtol=1e-4, atol=1e-7)
    ref_variance = torch.stack([ref._get_variance(t) for t in range(T)])
    # diffusers clamps the variance at 1e-20 where ours is exactly 0 (t = 0), and computes 1 − ᾱ in float32,
    # which loses ~1e-3 relative accuracy at small t; ours is float64 (checked exactly in test_q_posterior_*).
    assert torch.allclose(ours.posterior_variance, ref_variance, rtol=2e-3, atol=1e-12)


@pytest.mark.parametrize("T,message", [(0, "T=0"), (-3, "T=-3"), (10, "T=10")])
def test_bad_T_is_refused_with_the_key_named(T, message):
    with pytest.raises(ConfigError, match=message):
        linear_betas(T)


def test_a_schedule_that_leaves_signal_at_T_is_refused():
    with pytest.raises(ConfigError, match=r"alphas_cumprod\[T-1\].*> 0.01"):
        linear_betas(1000, beta_start=1e-5, beta_end=1e-4)


def test_cosine_works_for_very_short_chains():
    assert GaussianDiffusion(cosine_betas(1)).alphas_cumprod[-1] < 1e-2


@pytest.fixture
def diffusion():
    return GaussianDiffusion(cosine_betas(1000))


def test_q_sample_has_the_forward_marginal_moments(diffusion):
    torch.manual_seed(0)
    n, t = 200_000, 300
    x0 = torch.full((n, 1), 0.7)
    xt = diffusion.q_sample(x0, torch.full((n,), t), torch.randn(n, 1))
    a = diffusion.alphas_cumprod[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=5e-3)
    assert xt.var().item() == pytest.approx(1 - a, rel=1e-2)


def test_q_posterior_is_the_gaussian_conditional(diffusion):
    """μ̃ and β̃ against Bayes' rule for q(x_{t-1}|x_0)·q(x_t|x_{t-1}), computed independently."""
    torch.manual_seed(0)
    x0, xt = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    for t in [1, 10, 500, 999]:
        beta = diffusion.betas.double()[t]
        a_prev = torch.prod(1 - diffusion.betas.double()[:t])
        precision = 1 / (1 - a_prev) + (1 - beta) / beta
        var = 1 / precision
        mean = var * (a_prev.sqrt() * x0.double() / (1 - a_prev) + (1 - beta).sqrt() * xt.double() / beta)
        got_mean, got_var, got_logvar = diffusion.q_posterior(x0, xt, torch.full((5,), t))
        assert torch.allclose(got_mean.double(), mean, rtol=1e-4, atol=1e-5)
        assert got_var.flatten()[0].item() == pytest.approx(var.item(), rel=1e-4)
        assert got_logvar.flatten()[0].item() == pytest.approx(math.log(var.item()), rel=1e-4)


def test_predict_x0_from_eps_inverts_q_sample(diffusion):
    torch.manual_seed(0)
    x0, eps = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 1, 28, 28)
    t = torch.randint(0, 1000, (8,))
    recovered = diffusion.predict_x0_from_eps(diffusion.q_sample(x0, t, eps), t, eps)
    assert torch.allclose(recovered, x0, atol=2e-3)


def test_loss_is_zero_for_an_oracle_and_one_for_a_zero_predictor(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.rand(16, 1, 8, 8), torch.randn(16, 1, 8, 8)
    t = torch.randint(0, 1000, (16,))
    oracle = lambda xt, tt: (xt - diffusion.sqrt_alphas_cumprod[tt].view(-1, 1, 1, 1) * x0) / (  # noqa: E731
        diffusion.sqrt_one_minus_alphas_cumprod[tt].view(-1, 1, 1, 1))
    assert diffusion.per_sample_loss(oracle, x0, t, noise).max().item() < 1e-6
    zero = lambda xt, tt: torch.zeros_like(xt)  # noqa: E731
    assert torch.allclose(diffusion.per_sample_loss(zero, x0, t, noise), noise.pow(2).flatten(1).mean(1))


def test_training_timesteps_are_uniform_over_0_to_T_minus_1():
    t, weights = TimestepSampler(1000).sample(500_000, "cpu", torch.Generator().manual_seed(0))
    assert bool((weights == 1).all())
    assert t.min().item() == 0 and t.max().item() == 999
    counts = torch.bincount(t, minlength=1000).float()
    assert counts.std().item() / counts.mean().item() < 0.1
