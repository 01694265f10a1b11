"""The reverse step: the seed notebook's check at t=500, diffusers' DDPMScheduler, and an oracle chain."""

import pytest
import torch
from diffusers import DDPMScheduler

from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas, linear_betas
from diffusion_lab.sampling import DDPMSampler


def oracle_eps(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """An ε-model that knows x_0: ε = (x_t − sqrt(ᾱ_t)·x_0) / sqrt(1 − ᾱ_t)."""

    def model(xt, t):
        return (xt - diffusion.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1) * x0) / (
            diffusion.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1))

    return model


def test_one_step_at_t500_with_the_true_noise_is_the_posterior_mean_plus_sigma_z():
    diffusion = GaussianDiffusion(linear_betas(1000))
    sampler = DDPMSampler(diffusion)
    torch.manual_seed(0)
    x0, noise = torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, 1, 28, 28)
    t = torch.full((4,), 500)
    xt = diffusion.q_sample(x0, t, noise)
    i = sampler.timesteps.index(500)
    got = sampler.step(noise, i, xt, torch.Generator().manual_seed(7))
    mean, variance, _ = diffusion.q_posterior(x0, xt, t)
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(got, mean + variance.sqrt() * z, atol=1e-5)


@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_step_matches_diffusers_ddpm_scheduler(make_betas, variance):
    T = 1000
    diffusion = GaussianDiffusion(make_betas(T))
    sampler = DDPMSampler(diffusion, variance=variance)
    ref = DDPMScheduler(num_train_timesteps=T, trained_betas=diffusion.betas.numpy(), variance_type=variance,
                        clip_sample=False)
    ref.set_timesteps(T)
    assert ref.timesteps.tolist() == sampler.timesteps
    torch.manual_seed(0)
    for t in [999, 500, 100, 1, 0]:
        x, eps = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
        i = sampler.timesteps.index(t)
        ours = sampler.step(eps, i, x, torch.Generator().manual_seed(t))
        theirs = ref.step(eps, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        assert torch.allclose(ours, theirs, atol=2e-4, rtol=1e-4), t


def test_last_step_adds_no_noise():
    diffusion = GaussianDiffusion(linear_betas(1000))
    sampler = DDPMSampler(diffusion)
    x, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    a = sampler.step(eps, len(sampler.timesteps) - 1, x, torch.Generator().manual_seed(1))
    b = sampler.step(eps, len(sampler.timesteps) - 1, x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert torch.allclose(a, (x - diffusion.betas[0].sqrt() * eps) / diffusion.alphas[0].sqrt(), atol=1e-6)


@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
def test_the_full_chain_with_an_oracle_returns_x0(make_betas):
    """With ε known, every step samples q(x_{t−1} | x_t, x_0); the last (noise-free) step lands on x_0."""
    diffusion = GaussianDiffusion(make_betas(200))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    out = DDPMSampler(diffusion).sample(oracle_eps(diffusion, x0), torch.randn(4, 1, 28, 28),
                                        torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)


def test_sampling_is_reproducible_from_the_seed():
    diffusion = GaussianDiffusion(cosine_betas(50))
    model = lambda x, t: 0.1 * x  # noqa: E731
    runs = [DDPMSampler(diffusion).sample(model, torch.ones(2, 1, 4, 4), torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert torch.equal(*runs)


def test_unknown_variance_is_refused():
    with pytest.raises(ValueError, match="sampler.variance='learned'.*fixed_small, fixed_large"):
        DDPMSampler(GaussianDiffusion(linear_betas(1000)), variance="learned")
