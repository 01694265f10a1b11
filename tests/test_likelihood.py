"""Learned variances and likelihood: the bound's densities against scipy, its terms against closed forms on
Gaussian data with an oracle model, the hybrid loss's stop-gradient, the importance sampler, and ancestral
sampling with learned variances against Algorithm 2."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from diffusion_lab.diffusion import Denoiser, GaussianDiffusion, cosine_betas, linear_betas
from diffusion_lab.diffusion.likelihood import discretized_gaussian_log_likelihood, normal_kl
from diffusion_lab.diffusion.timesteps import HISTORY, TimestepSampler
from diffusion_lab.errors import ConfigError
from diffusion_lab.metrics.nll import bound_chain, bound_terms, ode_inputs, ode_log_likelihood, summary
from diffusion_lab.models import UNet
from diffusion_lab.module import DiffusionModule
from diffusion_lab.sampling import DDPMSampler

LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # the 8-bit values in model space


def test_normal_kl_equals_the_integral_of_p_log_p_over_q():
    rng = np.random.default_rng(0)
    for m1, m2, lv1, lv2 in rng.normal(size=(5, 4)):
        p, q = stats.norm(m1, math.exp(lv1 / 2)), stats.norm(m2, math.exp(lv2 / 2))
        expected, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -30, 30, limit=200)
        got = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, lv1, m2, lv2)))
        assert float(got) == pytest.approx(expected, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("mean, scale", [(0.1, 0.3), (-0.95, 0.02), (0.5, 1e-3), (3.0, 0.5), (0.0, 5.0)])
def test_the_decoder_is_the_normal_mass_of_each_bin_and_sums_to_one(mean, scale):
    log_p = discretized_gaussian_log_likelihood(LEVELS, torch.tensor(mean, dtype=torch.float64),
                                                torch.tensor(math.log(scale), dtype=torch.float64))
    edges = np.concatenate([[-np.inf], (LEVELS[:-1].numpy() + 1 / 255), [np.inf]])
    mass = np.diff(stats.norm.cdf(edges, mean, scale))
    tail = np.diff(stats.norm.sf(edges, mean, scale)) * -1  # the same masses from the upper tail, exact far right
    expected = np.where(edges[:-1] > mean, tail, mass)
    seen = expected > 1e-300
    np.testing.assert_allclose(log_p.exp().numpy()[seen], expected[seen], rtol=1e-9, atol=0)
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool(torch.isfinite(log_p[seen.nonzero()[0]]).all())


def test_the_decoder_keeps_the_far_tail_finite():
    """A bin 40 σ from the mean: float32 differences of the CDF give log 0; the tail form gives its log mass."""
    log_p = discretized_gaussian_log_likelihood(*(torch.tensor([v], dtype=torch.float64) for v in (0.0, 0.8, math.log(0.02))))
    upper, lower = stats.norm.logcdf(1 / 255, 0.8, 0.02), stats.norm.logcdf(-1 / 255, 0.8, 0.02)
    expected = upper + np.log1p(-np.exp(lower - upper))
    assert float(log_p) == pytest.approx(float(expected), rel=1e-9)


# Gaussian data x_0 ~ N(MU, S²·I): E[x_0 | x_t] is linear in x_t, so an oracle knows ε̂ and the best variance.
MU, S = 0.3, 0.5


def schedule(diffusion: GaussianDiffusion) -> dict:
    """ᾱ, β̃, the posterior mean's x_0 coefficient and the bounds of log σ² recomputed from the betas in float64
    (the diffusion's buffers are float32), independently of `GaussianDiffusion`."""
    betas = diffusion.betas.double()
    a = torch.cumprod(1 - betas, 0)
    a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a[:-1]])
    tilde = betas * (1 - a_prev) / (1 - a)
    return {"alphas_cumprod": a, "posterior_variance": tilde, "coef1": betas * a_prev.sqrt() / (1 - a),
            "log_low": torch.log(torch.cat([tilde[1:2], tilde[1:]])), "log_high": betas.log()}


def gaussian_posterior(diffusion: GaussianDiffusion, t: torch.Tensor, xt: torch.Tensor):
    """(E[x_0 | x_t], Var[x_0 | x_t]) for the Gaussian data."""
    a = schedule(diffusion)["alphas_cumprod"][t].view(-1, *[1] * (xt.ndim - 1))
    gain = a.sqrt() * S**2 / (a * S**2 + 1 - a)
    return MU + gain * (xt - a.sqrt() * MU), S**2 * (1 - a) / (a * S**2 + 1 - a)


def best_variances(diffusion: GaussianDiffusion) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ*²_t = β̃_t + coef1_t²·Var[x_0 | x_t], the variance output r that gives it, clipped to v in [0, 1])."""
    q, T = schedule(diffusion), diffusion.num_timesteps
    _, var_x0 = gaussian_posterior(diffusion, torch.arange(T), torch.zeros(T))
    best = q["posterior_variance"] + q["coef1"] ** 2 * var_x0
    best[0] = var_x0[0]  # the decoder: x_0 itself
    low, high = q["log_low"], q["log_high"]
    v = ((best.log() - low) / (high - low)).clamp(0, 1)
    return torch.exp(v * high + (1 - v) * low), 2 * v - 1


def oracle(diffusion: GaussianDiffusion):
    """The learn_sigma network that outputs the exact ε̂ and the best variance's r."""
    _, r = best_variances(diffusion)

    def net(xt, t):
        x0, _ = gaussian_posterior(diffusion, t, xt)
        a = schedule(diffusion)["alphas_cumprod"][t].view(-1, 1, 1, 1)
        eps = (xt - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps, r[t].view(-1, 1, 1, 1).expand_as(xt)], 1)

    return net


def expected_terms(diffusion: GaussianDiffusion) -> tuple[torch.Tensor, float]:
    """(E[L_t] in nats per dimension for t ≥ 1 with the oracle, E[L_T]): closed forms over x_0 and x_t."""
    q, T = schedule(diffusion), diffusion.num_timesteps
    variance, _ = best_variances(diffusion)
    _, var_x0 = gaussian_posterior(diffusion, torch.arange(T), torch.zeros(T))
    posterior = q["posterior_variance"]
    error = q["coef1"] ** 2 * var_x0  # E[(μ̃ − μ_θ)²]
    kl = 0.5 * (variance.log() - posterior.log() + (posterior + error) / variance - 1)
    a = float(q["alphas_cumprod"][-1])
    prior = 0.5 * (-1 - math.log1p(-a) + 1 - a + a * (MU**2 + S**2))
    return kl[1:], prior


def test_on_gaussian_data_the_oracle_bound_terms_match_the_analytic_kls():
    diffusion = GaussianDiffusion(cosine_betas(40), learn_sigma=True, loss="hybrid").double()
    net = oracle(diffusion)
    generator = torch.Generator().manual_seed(0)
    x0 = MU + S * torch.randn(4000, 1, 4, 4, generator=generator, dtype=torch.float64)
    kl, prior = expected_terms(diffusion)
    for step in (1, 5, 20, 39):
        t = torch.full((len(x0),), step)
        xt = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=generator, dtype=torch.float64))
        got = diffusion.vlb_terms(net(xt, t), x0, xt, t).mean() * math.log(2)  # bits → nats
        assert float(got) == pytest.approx(float(kl[step - 1]), rel=0.03), step
    assert float(diffusion.prior_bits_per_dim(x0).mean()) * math.log(2) == pytest.approx(prior, rel=0.03)


def test_the_gaussian_bound_lies_above_the_exact_nll_and_approaches_it_as_T_grows():
    """With a continuous Gaussian decoder (the data are continuous), bound = L_T + Σ L_t + L_0 ≥ h(x_0), the
    data's differential entropy, and the gap shrinks with T."""
    entropy = 0.5 * math.log(2 * math.pi * math.e * S**2)
    gaps = []
    for T in (10, 100, 1000):
        diffusion = GaussianDiffusion(cosine_betas(T), learn_sigma=True, loss="hybrid").double()
        kl, prior = expected_terms(diffusion)
        variance, _ = best_variances(diffusion)
        _, var_x0 = gaussian_posterior(diffusion, torch.zeros(1, dtype=torch.long), torch.zeros(1))
        decoder = 0.5 * math.log(2 * math.pi * float(variance[0])) + float(var_x0) / (2 * float(variance[0]))
        gaps.append(prior + float(kl.sum()) + decoder - entropy)
    assert all(g > 0 for g in gaps) and gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-8


def test_the_evaluated_bound_has_every_term_and_its_interval():
    diffusion = GaussianDiffusion(linear_betas(100), learn_sigma=True, loss="hybrid")
    net = UNet(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=(), learn_sigma=True).eval()
    x0 = torch.randint(0, 256, (6, 1, 28, 28)) / 127.5 - 1
    chain = bound_chain(diffusion, 10)
    assert chain.timestep_map.tolist()[0] == 0 and chain.timestep_map.tolist()[-1] == 99
    terms, prior = bound_terms(net, chain, x0, range(6), seed=0)
    again, _ = bound_terms(net, chain, x0[3:], range(3, 6), seed=0)  # an image's terms do not depend on its batch
    torch.testing.assert_close(terms[3:], again)
    result = summary(terms, prior, chain, True, "fixed_small")
    assert result["bpd"] == pytest.approx(float((terms.sum(1) + prior).mean()), rel=1e-6)
    assert result["bpd_ci"][0] < result["bpd"] < result["bpd_ci"][1] and result["steps"] == 10 and result["n"] == 6
    parts = result["terms"]
    assert parts["prior"]["bpd"] + parts["decoder"]["bpd"] + parts["kl"]["bpd"] == pytest.approx(result["bpd"])
    assert result["per_t"]["t"] == chain.timestep_map.tolist() and result["variance"] == "learned"


def test_respacing_keeps_the_alphas_cumprod_at_the_visited_timesteps():
    diffusion = GaussianDiffusion(linear_betas(1000))
    chain = diffusion.respaced([999, 500, 0, 250])
    torch.testing.assert_close(chain.alphas_cumprod, diffusion.alphas_cumprod[[0, 250, 500, 999]], rtol=1e-5, atol=0)
    assert chain.timestep_map.tolist() == [0, 250, 500, 999]


def test_the_hybrid_loss_trains_the_mean_on_L_simple_alone():
    """The L_vlb term's gradient reaches the variance output only (the mean is detached in it)."""
    simple = GaussianDiffusion(linear_betas(100), prediction="v")
    hybrid = GaussianDiffusion(linear_betas(100), prediction="v", learn_sigma=True, loss="hybrid")
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 1, 4, 4, generator=generator) * 2 - 1
    t = torch.tensor([0, 1, 5, 20, 50, 70, 98, 99])
    noise = torch.randn(x0.shape, generator=generator)
    output = torch.randn(8, 2, 4, 4, generator=generator, requires_grad=True)
    hybrid.per_sample_loss(lambda xt, tt: output, x0, t, noise).sum().backward()
    mean_output = output.detach()[:, :1].clone().requires_grad_(True)
    simple.per_sample_loss(lambda xt, tt: mean_output, x0, t, noise).sum().backward()
    torch.testing.assert_close(output.grad[:, :1], mean_output.grad)
    assert output.grad[:, 1:].abs().sum() > 0 and torch.isfinite(output.grad).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"learn_sigma": True, "loss": "simple"}, "model.learn_sigma=true: allowed with loss=hybrid or loss=vlb"),
    ({"loss": "hybrid"}, "loss=hybrid: allowed only with model.learn_sigma=true"),
    ({"loss": "vlb", "loss_weighting": "min_snr"}, "loss_weighting=min_snr: allowed with loss=vlb is none"),
    ({"loss": "l1"}, "loss='l1': allowed values are simple, hybrid, vlb"),
])
def test_a_loss_that_cannot_train_the_model_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GaussianDiffusion(linear_betas(100), **kwargs)


def test_the_importance_sampler_is_uniform_until_warm_then_favours_large_losses():
    T = 20
    sampler = TimestepSampler(T, importance=True)
    t, weights = sampler.sample(64, "cpu", torch.Generator().manual_seed(3))
    torch.testing.assert_close(t, torch.randint(0, T, (64,), generator=torch.Generator().manual_seed(3)))
    assert bool((weights == 1).all())
    steps = torch.arange(T).repeat(HISTORY)
    sampler.update(steps[:-1], torch.ones(len(steps) - 1))  # one loss short of the warm-up
    assert not sampler.warmed_up
    losses = torch.where(steps == 7, 10.0, 1.0)
    sampler.update(steps, losses)  # every t now holds its last HISTORY losses
    assert sampler.warmed_up
    p = sampler.probabilities()
    assert int(p.argmax()) == 7 and float(p.sum()) == pytest.approx(1.0)
    assert float(p[7] / p[0]) == pytest.approx(10.0, rel=0.02)  # sqrt(E[L²]): 10 against 1, slightly mixed
    t, weights = sampler.sample(200_000, "cpu", torch.Generator().manual_seed(4))
    assert float((t == 7).float().mean()) == pytest.approx(float(p[7]), rel=0.02)
    torch.testing.assert_close(weights, (1 / (T * p[t])).float())
    # Unbiased: E_p[w·L_t] is the uniform mean of L_t.
    assert float((p * (1 / (T * p)) * losses[:T].double()).sum()) == pytest.approx(float(losses[:T].mean()))


def test_the_importance_state_round_trips_through_a_state_dict():
    a = TimestepSampler(5, importance=True)
    a.update(torch.arange(5).repeat(12), torch.rand(60, generator=torch.Generator().manual_seed(0)))
    b = TimestepSampler(5, importance=True)
    b.load_state_dict(a.state_dict())
    draws = [s.sample(32, "cpu", torch.Generator().manual_seed(9)) for s in (a, b)]
    torch.testing.assert_close(draws[0], draws[1])
    assert "loss_history" not in TimestepSampler(5).state_dict()  # uniform: nothing to keep


class AffineNet(torch.nn.Module):
    """A learn_sigma stand-in: ε-output 0.1·x + 0.001·t, variance output r fixed (`pinned`) or varying with x."""

    def __init__(self, pinned: float | None = None):
        super().__init__()
        self.pinned = pinned

    def forward(self, x, t):
        eps = 0.1 * x + 0.001 * t.view(-1, 1, 1, 1)
        r = torch.full_like(x, self.pinned) if self.pinned is not None else 0.8 * torch.tanh(x)
        return torch.cat([eps, r], 1)


def test_learned_variances_at_K_equal_T_reproduce_algorithm_2():
    T = 30
    diffusion = GaussianDiffusion(cosine_betas(T), learn_sigma=True, loss="hybrid")
    denoiser = Denoiser(AffineNet(), diffusion)
    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    got = DDPMSampler(diffusion).sample(denoiser, noise, torch.Generator().manual_seed(1))
    betas = diffusion.betas.double()
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    generator, x = torch.Generator().manual_seed(1), noise.double()
    for t in reversed(range(T)):
        out = AffineNet()(x.float(), torch.full((3,), t)).double()
        eps, r = out[:, :1], out[:, 1:]
        mean = (x - betas[t] / (1 - alphas_cumprod[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
        if t > 0:
            tilde = (1 - alphas_cumprod_prev[t]) / (1 - alphas_cumprod[t]) * betas[t]
            v = (r + 1) / 2  # Nichol & Dhariwal eq. 15
            sigma = torch.exp(0.5 * (v * betas[t].log() + (1 - v) * tilde.log()))
            mean = mean + sigma * torch.randn(x.shape, generator=generator).double()
        x = mean
    torch.testing.assert_close(got, x.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pinned, fixed", [(1.0, "fixed_large"), (-1.0, "fixed_small")])
def test_a_variance_pinned_at_an_end_samples_like_that_fixed_variance(pinned, fixed):
    """v = 1 is σ² = β, v = 0 is σ² = β̃, also respaced (50 of 1,000 steps)."""
    learned = GaussianDiffusion(linear_betas(1000), learn_sigma=True, loss="hybrid")
    fixed_model = GaussianDiffusion(linear_betas(1000))
    noise = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    net = AffineNet(pinned)
    got = DDPMSampler(learned, steps=50).sample(Denoiser(net, learned), noise, torch.Generator().manual_seed(5))
    expected = DDPMSampler(fixed_model, steps=50, variance=fixed).sample(
        lambda x, t: net(x, t)[:, :1], noise, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_ode_likelihood_of_gaussian_data_under_the_oracle_is_their_density():
    """With ε = E[ε | x_t] of N(0, S²) data, the probability-flow ODE carries N(0, S² + σ_min²) to noise, so
    log p(x) is that normal's log density (the prior N(0, 1 + σ_max²) against N(0, S² + σ_max²) costs about
    1e-5 a dimension; a mean μ would cost μ/σ_max ≈ 2e-3 a dimension)."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    mu = 0.0

    def eps_model(xt, t):
        a = diffusion.alphas_cumprod_at(t, xt.ndim).double()
        sigma = ((1 - a) / a).sqrt()
        return sigma * (xt / a.sqrt() - mu) / (S**2 + sigma**2)

    x = mu + S * torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probes = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)).double() * 2 - 1
    log_p, evaluations = ode_log_likelihood(eps_model, diffusion, x, probes)
    sigma_min2 = float(diffusion.betas[0] / (1 - diffusion.betas[0]))
    expected = stats.norm.logpdf(x.double().numpy(), mu, math.sqrt(S**2 + sigma_min2)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(log_p.numpy(), expected, atol=1e-3)
    assert 10 < evaluations < 2000


def test_ode_inputs_lie_in_their_bins_and_repeat_for_the_same_image():
    images = torch.randint(0, 256, (4, 1, 3, 3), dtype=torch.uint8)
    x, probes = ode_inputs(images, range(4), seed=0)
    k = (x.double() + 1) * 128  # back to [k, k + 1)
    assert bool(((k >= images.double()) & (k < images.double() + 1)).all())
    assert set(probes.unique().tolist()) == {-1.0, 1.0}
    x2, probes2 = ode_inputs(images[2:], range(2, 4), seed=0)
    torch.testing.assert_close(x[2:], x2)
    torch.testing.assert_close(probes[2:], probes2)


def test_under_guidance_the_learned_variance_is_the_conditional_ones():
    diffusion = GaussianDiffusion(linear_betas(100), learn_sigma=True, loss="hybrid")
    net = UNet(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=(), num_classes=10,
               learn_sigma=True).eval()
    torch.nn.init.normal_(net.head[-1].weight, std=0.05)
    x, t, labels = torch.randn(3, 1, 28, 28), torch.tensor([10, 50, 90]), torch.tensor([1, 4, 7])
    eps, variance_output = Denoiser(net, diffusion, labels, guidance_scale=2.0).outputs(x, t)
    with torch.no_grad():
        conditional, unconditional = net(x, t, labels), net(x, t, torch.full_like(labels, 10))
    torch.testing.assert_close(variance_output, conditional[:, 1:])
    expected = diffusion.eps_from_output(3 * conditional[:, :1] - 2 * unconditional[:, :1], x, t)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("T", [1000, 200, 50, 4])
def test_val_bpd_strata_cover_every_t_once_weighted_by_their_width(T):
    """Column 0 is L_0; the strata partition {1..T−1} with t = 1 alone, so Σ_j w_j·L_{t_j} is unbiased for Σ L_t."""
    net = UNet(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=())
    module = DiffusionModule(net, GaussianDiffusion(cosine_betas(T)), optimizer=None, val_size=64)
    assert bool((module.bpd_t[:, 0] == 0).all()) and module.bpd_weights[0] == 1
    widths = module.bpd_weights[1:].long()
    starts = torch.cat([torch.ones(1, dtype=torch.long), 1 + widths.cumsum(0)[:-1]])
    assert int(widths.sum()) == T - 1 and int(widths[0]) == 1
    t = module.bpd_t[:, 1:]
    assert bool(((t >= starts) & (t < starts + widths)).all())
    assert len(module.bpd_t.unique()) > module.bpd_t.shape[1] or T <= 4  # t varies over images within a stratum


def test_a_pinned_variance_is_named_by_its_preset():
    learned = GaussianDiffusion(linear_betas(100), learn_sigma=True, loss="hybrid")
    assert [DDPMSampler(learned, 10, variance=v).label for v in ("auto", "learned", "fixed_small", "fixed_large")] == [
        "ddpm", "ddpm", "ddpm_fixed_small", "ddpm_fixed_large"]
    assert DDPMSampler(learned, 10).learned_variance and not DDPMSampler(learned, 10, variance="fixed_small").learned_variance
