"""The reverse step: the seed notebook's check at t=500, diffusers' DDPMScheduler, and an oracle chain."""

import pytest
import torch

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


def test_one_step_at_t500_with_the_oracle_has_the_moments_of_q_x499_given_x0():
    """Marginally over x_500 ~ q(x_500|x_0) and the step's noise, x_499 ~ q(x_499|x_0) = N(sqrt(ᾱ_499)·x_0, 1 − ᾱ_499)."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    sampler = DDPMSampler(diffusion)
    n, x0 = 400_000, 0.6
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, 1, generator=g)
    t = torch.full((n,), 500)
    x500 = diffusion.q_sample(torch.full((n, 1), x0), t, noise)
    x499 = sampler.step(noise, sampler.timesteps.index(500), x500, g)
    a = diffusion.alphas_cumprod[499].double().item()
    assert x499.mean().item() == pytest.approx(a**0.5 * x0, abs=4e-3)
    assert x499.var().item() == pytest.approx(1 - a, rel=1e-2)


@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_step_matches_diffusers_ddpm_scheduler(diffusers, make_betas, variance):
    T = 1000
    diffusion = GaussianDiffusion(make_betas(T))
    sampler = DDPMSampler(diffusion, variance=variance)
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=diffusion.betas.numpy(), variance_type=variance,
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
    with pytest.raises(ValueError, match="sampler.variance='tiny'.*auto, learned, fixed_small, fixed_large"):
        DDPMSampler(GaussianDiffusion(linear_betas(1000)), variance="tiny")


def test_learned_variance_is_refused_for_a_fixed_variance_model():
    with pytest.raises(ValueError, match="sampler.variance=learned: allowed only for a model trained with "
                                         "model.learn_sigma=true.*auto, fixed_small, fixed_large"):
        DDPMSampler(GaussianDiffusion(linear_betas(1000)), variance="learned")


# --- fewer steps than T: spacing, respaced DDPM, DDIM, DPM-Solver++(2M) ---------------------------------


from diffusion_lab.rules import TIME_SPACINGS as SPACINGS  # noqa: E402
from diffusion_lab.sampling import DDIMSampler, DPMSolverSampler, spaced_timesteps  # noqa: E402

STEP_COUNTS = [50, 100, 200]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("K", [2, 7, 50, 100, 200, 333, 1000])
def test_spacing_matches_diffusers_and_covers_the_chain(diffusers, spacing, K):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    ref.set_timesteps(K)
    ours = spaced_timesteps(1000, K, spacing)
    assert ours == ref.timesteps.tolist()
    assert len(set(ours)) == K and ours == sorted(ours, reverse=True)
    if spacing != "leading":
        assert ours[0] == 999  # never "the last K steps of the chain": the first step is pure noise
    if spacing != "trailing":
        assert ours[-1] == 0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("T", [1000, 200])
def test_every_step_count_gets_that_many_distinct_timesteps_in_range(spacing, T):
    """For every K of 1..T (diffusers' trailing arange gives K + 1 timesteps, the last −1, for 62 of the K ≤ 1000)."""
    for K in range(1, T + 1):
        steps = spaced_timesteps(T, K, spacing)
        assert len(steps) == K and len(set(steps)) == K and steps == sorted(steps, reverse=True), K
        assert 0 <= steps[-1] and steps[0] <= T - 1, K


def test_one_linspace_step_starts_from_noise_not_from_t0():
    assert spaced_timesteps(1000, 1, "linspace") == [999] == spaced_timesteps(1000, 1, "trailing")


def test_bad_spacing_and_step_counts_are_refused():
    with pytest.raises(ValueError, match="sampler.spacing='even': allowed values are trailing, linspace, leading"):
        spaced_timesteps(1000, 50, "even")
    with pytest.raises(ValueError, match=r"steps=2000: 2000 not allowed; step counts are integers 1..T=1000"):
        spaced_timesteps(1000, 2000)
    with pytest.raises(ValueError, match="sampler.eta=1.5"):
        DDIMSampler(GaussianDiffusion(linear_betas(1000)), eta=1.5)


def toy_model(x, t):
    """A deterministic stand-in for ε_θ that depends on both x and t."""
    return torch.tanh(0.8 * x) + 0.0005 * t.float().view(-1, 1, 1, 1) - 0.2


def test_respaced_ddpm_with_K_equal_T_is_algorithm_2():
    diffusion = GaussianDiffusion(linear_betas(1000))
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = DDPMSampler(diffusion, steps=1000).sample(toy_model, noise, torch.Generator().manual_seed(1))
    x, g = noise.clone(), torch.Generator().manual_seed(1)
    b, a, ab = diffusion.betas.double(), diffusion.alphas.double(), diffusion.alphas_cumprod.double()
    for t in range(999, -1, -1):  # Ho et al. Algorithm 2, line by line
        z = torch.randn(x.shape, generator=g) if t > 0 else torch.zeros_like(x)
        sigma = ((1 - ab[t - 1]) / (1 - ab[t]) * b[t]).sqrt() if t > 0 else 0
        eps = toy_model(x, torch.full((2,), t))
        x = ((x.double() - b[t] / (1 - ab[t]).sqrt() * eps.double()) / a[t].sqrt() + sigma * z).float()
    assert torch.allclose(ours, x, atol=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("K", STEP_COUNTS)
def test_respaced_cumulative_alphas_are_alphas_cumprod_at_the_chosen_timesteps(spacing, K):
    diffusion = GaussianDiffusion(cosine_betas(1000))
    sampler = DDPMSampler(diffusion, steps=K, spacing=spacing)
    respaced = torch.cumprod(1 - torch.tensor(sampler.betas[::-1], dtype=torch.float64), 0).flip(0)
    assert torch.allclose(respaced.float(), diffusion.alphas_cumprod[sampler.timesteps], rtol=1e-5)


@pytest.mark.parametrize("make_sampler", [
    lambda d, K, s: DDIMSampler(d, K, s, eta=0.0),
    lambda d, K, s: DDPMSampler(d, K, s),
    lambda d, K, s: DPMSolverSampler(d, K, s),
], ids=["ddim", "ddpm", "dpm_solver"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("K", [1, 10, 50, 100, 200, 1000])
def test_an_oracle_lands_on_x0_for_every_sampler_K_and_spacing(make_sampler, spacing, K):
    diffusion = GaussianDiffusion(linear_betas(1000))
    x0 = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = make_sampler(diffusion, K, spacing).sample(oracle_eps(diffusion, x0), torch.randn(3, 1, 8, 8),
                                                     torch.Generator().manual_seed(1))
    assert torch.allclose(out, x0, atol=1e-4)


def run_reference(scheduler, timesteps, noise, generator_seed):
    x, g = noise.clone(), torch.Generator().manual_seed(generator_seed)
    for t in timesteps:
        x = scheduler.step(toy_model(x, torch.full((x.shape[0],), int(t))), t, x, generator=g).prev_sample
    return x


@pytest.mark.parametrize("spacing", ["trailing", "leading"])  # uniform strides: diffusers steps by T // K
@pytest.mark.parametrize("K", STEP_COUNTS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
def test_respaced_ddpm_matches_diffusers(diffusers, make_betas, K, spacing):
    diffusion = GaussianDiffusion(make_betas(1000))
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(), clip_sample=False,
                        timestep_spacing=spacing)
    ref.set_timesteps(K)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = DDPMSampler(diffusion, K, spacing).sample(toy_model, noise, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, run_reference(ref, ref.timesteps, noise, 5), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("K", STEP_COUNTS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
def test_ddim_matches_diffusers(diffusers, make_betas, K, spacing, eta):
    diffusion = GaussianDiffusion(make_betas(1000))
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(), clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing=spacing)
    ref.set_timesteps(K)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = DDIMSampler(diffusion, K, spacing, eta=eta).sample(toy_model, noise, torch.Generator().manual_seed(5))
    x, g = noise.clone(), torch.Generator().manual_seed(5)
    for t in ref.timesteps:
        x = ref.step(toy_model(x, torch.full((2,), int(t))), t, x, eta=eta, generator=g).prev_sample
    assert torch.allclose(ours, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("K", [10, 20, 50])
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
def test_dpm_solver_matches_diffusers_2m(diffusers, make_betas, K, spacing):
    diffusion = GaussianDiffusion(make_betas(1000))
    sampler = DPMSolverSampler(diffusion, K, spacing)
    ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
                                      algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                      final_sigmas_type="zero", lower_order_final=True)
    ref.set_timesteps(timesteps=sampler.timesteps)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sampler.sample(toy_model, noise), run_reference(ref, ref.timesteps, noise, 0),
                          atol=1e-4, rtol=1e-4)


class CountingNet(torch.nn.Module):
    """A class-conditional stand-in network that counts the images it evaluates."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        self.evaluated = 0

    def forward(self, x, t, labels=None):
        self.evaluated += len(x)
        return torch.zeros_like(x)


@pytest.mark.parametrize("make_sampler", [DDPMSampler, DDIMSampler, DPMSolverSampler])
@pytest.mark.parametrize("guidance_scale", [0.0, 2.0])
def test_nfe_is_the_network_evaluations_a_chain_costs_per_image(make_sampler, guidance_scale):
    from diffusion_lab.cost import nfe
    from diffusion_lab.diffusion import Denoiser

    diffusion = GaussianDiffusion(linear_betas(100))
    net, sampler = CountingNet(), make_sampler(diffusion, steps=7)
    denoiser = Denoiser(net, diffusion, torch.arange(5), guidance_scale)
    sampler.sample(denoiser, torch.randn(5, 1, 8, 8), torch.Generator().manual_seed(0))
    assert net.evaluated / 5 == nfe(sampler, denoiser) == 7 * (2 if guidance_scale else 1)
