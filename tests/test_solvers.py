"""The solvers of the probability-flow ODE and SDE and the step schedules in σ: against diffusers' schedulers over
whole chains, against closed forms (an oracle that knows x_0, Gaussian data with an exact ODE solution), and
against each other where they are the same method under two names."""

import math

import numpy as np
import pytest
import torch

from diffusion_lab.config import build_option
from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas, linear_betas
from diffusion_lab.errors import ConfigError
from diffusion_lab.rules import SPACINGS
from diffusion_lab.sampling import (DDIMSampler, DPMSolverSampler, EulerAncestralSampler, EulerSampler, HeunSampler,
                                    UniPCSampler, noise_levels)
from diffusion_lab.sampling.spacing import SigmaToTimestep

SOLVERS = ["ddim", "ddpm", "dpm_solver", "dpm_solver_3m", "dpm_solver_sde", "euler", "euler_ancestral", "heun", "unipc",
           "unipc_3"]
STEPS = [10, 20, 50]


def toy_model(x, t):
    """A deterministic stand-in for ε_θ that depends smoothly on both x and a (float) t."""
    return torch.tanh(0.8 * x) + 0.0005 * t.to(x.dtype).view(-1, 1, 1, 1) - 0.2


def schedule_of(diffusion: GaussianDiffusion) -> np.ndarray:
    return torch.cumprod(1 - diffusion.betas.double(), 0).numpy()


def sigma_at(diffusion: GaussianDiffusion, t: torch.Tensor) -> float:
    """σ at the network's t in float64: the trained level at an integer t, log σ linear between them."""
    return SigmaToTimestep(schedule_of(diffusion)).sigma(float(t[0]))


def oracle(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """ε of x_t made from this x0, in float64, at any t."""

    def model(x, t):
        a = 1 / (1 + sigma_at(diffusion, t) ** 2)
        return (x - a**0.5 * x0) / (1 - a) ** 0.5

    return model


# --- step schedules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 2, 10, 50])
@pytest.mark.parametrize("spacing", ["karras", "exponential", "log_snr"])
def test_sigma_schedules_follow_their_closed_forms_between_the_trained_ends(spacing, K):
    diffusion = GaussianDiffusion(linear_betas(1000))
    a = schedule_of(diffusion)
    s_min, s_max = math.sqrt((1 - a[0]) / a[0]), math.sqrt((1 - a[-1]) / a[-1])
    levels = noise_levels(a, K, spacing)
    sigmas = np.array(levels.sigmas)
    assert len(levels.timesteps) == K and sigmas[0] == s_max and np.all(np.diff(sigmas) < 0)
    if spacing == "karras":  # σ_i^{1/ρ} evenly spaced (Karras et al. eq. 5), then 0
        assert sigmas[-1] == 0 and np.allclose(np.diff(sigmas[:-1] ** (1 / 7)), ((s_min ** (1 / 7) - s_max ** (1 / 7))
                                                                                  / max(K - 1, 1)))
    elif spacing == "exponential":  # log σ evenly spaced, then 0
        assert sigmas[-1] == 0 and np.allclose(np.diff(np.log(sigmas[:-1])), np.log(s_min / s_max) / max(K - 1, 1))
    else:  # λ = −2·log σ evenly spaced over K + 1 levels, ending on σ_min
        assert sigmas[-1] == s_min and np.allclose(np.diff(-2 * np.log(sigmas)), 2 * np.log(s_max / s_min) / K)
    # the network's t between the trained timesteps: σ(t) recovers the level, ends at T−1 and 0
    to_t = SigmaToTimestep(a)
    assert np.allclose([to_t.sigma(t) for t in levels.timesteps], sigmas[:K], rtol=1e-10)
    assert levels.timesteps[0] == 999 and (K < 2 or spacing == "log_snr" or levels.timesteps[-1] == 0)


@pytest.mark.parametrize("K", [10, 20, 50])
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("flag,spacing", [("use_karras_sigmas", "karras"), ("use_exponential_sigmas", "exponential")])
def test_sigma_schedules_match_diffusers(diffusers, make_betas, K, flag, spacing):
    """diffusers' Euler takes σ_min/σ_max from its t-spacing; at `linspace` those are the trained ends."""
    diffusion = GaussianDiffusion(make_betas(1000))
    ref = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
                                           timestep_spacing="linspace", **{flag: True})
    ref.set_timesteps(K)
    ours = noise_levels(schedule_of(diffusion), K, spacing)
    assert np.allclose(ref.sigmas.numpy(), ours.sigmas, rtol=5e-4)  # diffusers: ᾱ in float32
    assert np.allclose(ref.timesteps.numpy(), ours.timesteps, rtol=5e-4, atol=1e-3)


def test_the_denoiser_reads_a_float_t_on_the_same_log_sigma_line():
    diffusion = GaussianDiffusion(cosine_betas(1000))
    to_t = SigmaToTimestep(schedule_of(diffusion))
    t = torch.tensor([0.0, 3.5, 250.25, 998.9, 999.0])
    got = diffusion.alphas_cumprod_at(t, 1).double()
    expected = torch.tensor([1 / (1 + to_t.sigma(float(u)) ** 2) for u in t], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=2e-5)
    assert torch.equal(diffusion.alphas_cumprod_at(torch.tensor([7]), 1).flatten(), diffusion.alphas_cumprod[7:8])


# --- an oracle that knows x_0 ----------------------------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("K", [1, 2, 10, 50])
def test_an_oracle_gives_x0_back_for_every_solver_and_spacing(solver, spacing, K):
    """With ε exact, every deterministic solver follows x̃ = x_0 + σ·ε exactly and every stochastic one ends with
    the data prediction; `log_snr` ends at t = 0 instead, on sqrt(ᾱ_0)·x_0 + sqrt(1 − ᾱ_0)·ε."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    sampler = build_option("sampler", solver)(diffusion, steps=K, spacing=spacing)
    model = oracle(diffusion, x0)
    out = sampler.sample(model, noise, torch.Generator().manual_seed(1))
    if spacing != "log_snr":
        assert torch.allclose(out, x0, atol=1e-6)
        return
    a0 = float(schedule_of(diffusion)[0])
    if solver in ("ddpm", "euler_ancestral", "dpm_solver_sde"):  # x_{t=0} ~ q(x_0 | x_0): within 6 σ of its mean
        assert (out - a0**0.5 * x0).abs().max() < 6 * (1 - a0) ** 0.5
    else:
        eps = model(noise, torch.full((3,), sampler.timesteps[0]))
        assert torch.allclose(out, a0**0.5 * x0 + (1 - a0) ** 0.5 * eps, atol=1e-6)


# --- the same method under two names ---------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["trailing", "leading", "karras"])
def test_euler_is_ddim_at_eta_0_and_euler_ancestral_is_ddim_at_eta_1(spacing):
    diffusion = GaussianDiffusion(cosine_betas(1000))
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for euler, eta in ((EulerSampler, 0.0), (EulerAncestralSampler, 1.0)):
        a = euler(diffusion, 20, spacing).sample(toy_model, noise, torch.Generator().manual_seed(3))
        b = DDIMSampler(diffusion, 20, spacing, eta=eta).sample(toy_model, noise, torch.Generator().manual_seed(3))
        assert torch.allclose(a, b, atol=1e-10), euler.__name__


# --- diffusers' schedulers over whole chains -------------------------------------------------------------


def run_diffusers(scheduler, sampler, noise, seed: int = 0, variance_exploding: bool = False,
                  stochastic: bool = False):
    """diffusers' loop with the model asked at *our* t for each of its evaluations (diffusers rounds the t of
    DPM-Solver and UniPC to integers on a σ schedule, which tells the network a level other than the one the
    solver assumes; we keep the exact t). Euler-type schedulers work on x̃ = x·sqrt(1 + σ²)."""
    assert len(scheduler.timesteps) == len(sampler.timesteps)
    scale = math.sqrt(1 + sampler.sigmas[0] ** 2) if variance_exploding else 1.0
    scheduler.set_begin_index(0)  # not looked up by t: on cosine, karras t rounded to integers repeat near T−1
    x, g = noise.clone() * scale, torch.Generator().manual_seed(seed)
    for t_theirs, t_ours in zip(scheduler.timesteps, sampler.timesteps):
        assert abs(float(t_theirs) - t_ours) <= 1, (t_theirs, t_ours)  # made an integer there, or ᾱ in float32
        model_input = scheduler.scale_model_input(x, t_theirs)
        eps = toy_model(model_input, torch.full((x.shape[0],), t_ours, dtype=torch.float64))
        x = scheduler.step(eps, t_theirs, x, **({"generator": g} if stochastic else {})).prev_sample
    return x


def close(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Equal to diffusers' float32 arithmetic (its ᾱ, σ and steps), relative to the chain's largest value: on the
    cosine schedule σ_max ≈ 2·10⁴, and a stand-in model that is no denoiser ends far from [−1, 1]."""
    return float((ours - theirs).abs().max()) <= 2e-4 * max(1.0, float(theirs.abs().max()))


def our_chain(sampler, noise, seed: int = 0):
    return sampler.sample(toy_model, noise, torch.Generator().manual_seed(seed))


def noise_of(seed: int = 0):
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# diffusers' `linspace` and `leading` differ between its schedulers (K or K + 1 points, rounded or not) and from
# DDIM's, which is ours everywhere; `trailing` is the same in all. The σ schedules are compared on linspace, where
# diffusers' σ_min/σ_max are the trained ends.
EULER_SPACINGS = {"trailing": {"timestep_spacing": "trailing"}, "leading": {"timestep_spacing": "leading"},
                  "karras": {"use_karras_sigmas": True}, "exponential": {"use_exponential_sigmas": True}}


@pytest.mark.parametrize("K", STEPS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("spacing", list(EULER_SPACINGS))
@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_euler_and_heun_match_diffusers(diffusers, solver, spacing, make_betas, K):
    diffusion = GaussianDiffusion(make_betas(1000))
    ours = {"euler": EulerSampler, "heun": HeunSampler}[solver](diffusion, K, spacing)
    cls = {"euler": diffusers.EulerDiscreteScheduler, "heun": diffusers.HeunDiscreteScheduler}[solver]
    ref = cls(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
              **{"timestep_spacing": "linspace", **EULER_SPACINGS[spacing]})
    ref.set_timesteps(K)
    assert ours.network_evaluations == len(ref.timesteps) == (2 * K - 1 if solver == "heun" else K)
    assert close(our_chain(ours, noise_of()), run_diffusers(ref, ours, noise_of(), variance_exploding=True))


@pytest.mark.parametrize("K", STEPS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])  # diffusers' EulerAncestral has no σ schedules
def test_euler_ancestral_matches_diffusers_given_the_same_noise(diffusers, spacing, make_betas, K):
    diffusion = GaussianDiffusion(make_betas(1000))
    ours = EulerAncestralSampler(diffusion, K, spacing)
    ref = diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
                                                    timestep_spacing=spacing)
    ref.set_timesteps(K)
    assert close(our_chain(ours, noise_of(), 5), run_diffusers(ref, ours, noise_of(), 5, True, True))


MULTISTEP_SPACINGS = {"trailing": {"timestep_spacing": "trailing"}, "karras": {"use_karras_sigmas": True},
                      "exponential": {"use_exponential_sigmas": True}}


def taylor_3m(diffusers):
    """diffusers' DPM-Solver++ 3M with D2 at its Taylor weight: its D2 = (D1_0 − D1_1)/(r_0 + r_1) is h²·D''/2,
    and the term −α·φ_3·D2 needs h²·D'' (see `test_3m_at_diffusers_weight_is_second_order`); the rest is theirs."""

    class Taylor3M(diffusers.DPMSolverMultistepScheduler):
        def multistep_dpm_solver_third_order_update(self, model_output_list, *args, sample=None, noise=None,
                                                    **kwargs):
            x_half = super().multistep_dpm_solver_third_order_update(model_output_list, sample=sample, noise=noise)
            (a_t, s_t), (a_0, s_0), (a_1, s_1), (a_2, s_2) = (
                self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index + j]) for j in (1, 0, -1, -2))
            lam_t, lam_0, lam_1, lam_2 = (torch.log(a) - torch.log(s) for a, s in
                                          ((a_t, s_t), (a_0, s_0), (a_1, s_1), (a_2, s_2)))
            h, m0, m1, m2 = lam_t - lam_0, *model_output_list[-1:-4:-1]
            r0, r1 = (lam_0 - lam_1) / h, (lam_1 - lam_2) / h
            d2 = ((m0 - m1) / r0 - (m1 - m2) / r1) / (r0 + r1)
            return x_half - a_t * ((torch.expm1(-h) + h) / h**2 - 0.5) * d2  # the other half of the D2 term

    return Taylor3M


@pytest.mark.parametrize("K", STEPS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("spacing", list(MULTISTEP_SPACINGS) + ["linspace", "leading"])
@pytest.mark.parametrize("order,algorithm", [(2, "dpmsolver++"), (3, "dpmsolver++"), (2, "sde-dpmsolver++")],
                         ids=["2M", "3M", "2M-SDE"])
def test_dpm_solver_matches_diffusers(diffusers, order, algorithm, spacing, make_betas, K):
    diffusion = GaussianDiffusion(make_betas(1000))
    ours = DPMSolverSampler(diffusion, K, spacing, order=order, algorithm=algorithm)
    ref = (taylor_3m(diffusers) if order == 3 else diffusers.DPMSolverMultistepScheduler)(
        num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(), algorithm_type=algorithm,
        solver_order=order, solver_type="midpoint", final_sigmas_type="zero", lower_order_final=True,
        **MULTISTEP_SPACINGS.get(spacing, {}))
    if spacing in MULTISTEP_SPACINGS:
        ref.set_timesteps(K)
    else:  # our linspace/leading are DDIM's, given to diffusers as they are
        ref.set_timesteps(timesteps=ours.timesteps)
    theirs = run_diffusers(ref, ours, noise_of(), 5, stochastic=algorithm == "sde-dpmsolver++")
    assert close(our_chain(ours, noise_of(), 5), theirs)


@pytest.mark.parametrize("K", STEPS)
@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("spacing", list(MULTISTEP_SPACINGS))  # UniPC takes no list of timesteps
@pytest.mark.parametrize("order", [2, 3])
def test_unipc_matches_diffusers(diffusers, order, spacing, make_betas, K):
    diffusion = GaussianDiffusion(make_betas(1000))
    ours = UniPCSampler(diffusion, K, spacing, order=order)
    ref = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
                                            solver_order=order, solver_type="bh2", predict_x0=True,
                                            lower_order_final=True, final_sigmas_type="zero",
                                            **MULTISTEP_SPACINGS[spacing])
    ref.set_timesteps(K)
    assert close(our_chain(ours, noise_of()), run_diffusers(ref, ours, noise_of()))


def test_dynamic_thresholding_matches_diffusers_where_its_upper_bound_is_lifted(diffusers):
    """diffusers clamps the percentile s to [1, sample_max_value] (1 by default: the static clip); Saharia et al.
    bound it below only, which is ours."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    ours = DPMSolverSampler(diffusion, 20, dynamic_threshold=0.9)
    ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, trained_betas=diffusion.betas.numpy(),
                                                timestep_spacing="trailing", thresholding=True,
                                                dynamic_thresholding_ratio=0.9, sample_max_value=1e9)
    ref.set_timesteps(20)
    noise = 3 * noise_of()  # images whose x̂_0 leaves [−1, 1]
    assert close(our_chain(ours, noise), run_diffusers(ref, ours, noise))


def test_dynamic_thresholding_scales_each_image_by_its_own_percentile():
    diffusion = GaussianDiffusion(linear_betas(100))
    sampler = DDIMSampler(diffusion, 10, dynamic_threshold=0.5)
    x0 = torch.stack([torch.linspace(-4, 4, 101), torch.linspace(-0.5, 0.5, 101)]).view(2, 1, 101)
    a = sampler.alphas_cumprod[3]
    eps = torch.zeros_like(x0)
    bounded = sampler.predict_x0(eps, 3, a**0.5 * x0)
    # image 0: |x̂_0|'s median is 2, so x̂_0 → clip(x̂_0, −2, 2)/2; image 1 stays (s = max(0.25, 1) = 1)
    assert torch.allclose(bounded[0], x0[0].clamp(-2, 2) / 2, atol=1e-5)
    assert torch.allclose(bounded[1], x0[1], atol=1e-5)


def test_heun_with_churn_is_karras_algorithm_2():
    """Against Algorithm 2 written out line by line on x̃, the model evaluated at σ̂ (its t interpolated)."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    K, churn, tmin, tmax = 12, 40.0, 0.05, 50.0
    ours = HeunSampler(diffusion, K, "karras", s_churn=churn, s_tmin=tmin, s_tmax=tmax, s_noise=1.003)
    sigmas, to_t = ours.sigmas, SigmaToTimestep(schedule_of(diffusion))
    noise = noise_of().double()

    def denoise(x_ve, sigma):  # D(x̃; σ) from the ε-model at its t
        eps = toy_model(x_ve / math.sqrt(1 + sigma**2), torch.full((2,), to_t(sigma), dtype=torch.float64))
        return x_ve - sigma * eps

    g = torch.Generator().manual_seed(4)
    x = noise * math.sqrt(1 + sigmas[0] ** 2)
    for i in range(K):
        gamma = min(churn / K, math.sqrt(2) - 1) if tmin <= sigmas[i] <= tmax else 0.0
        sigma_hat = sigmas[i] * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sigma_hat**2 - sigmas[i] ** 2) * 1.003 * torch.randn(x.shape, generator=g,
                                                                                     dtype=x.dtype)
        d = (x - denoise(x, sigma_hat)) / sigma_hat
        x_next = x + (sigmas[i + 1] - sigma_hat) * d
        if sigmas[i + 1] != 0:
            d_next = (x_next - denoise(x_next, sigmas[i + 1])) / sigmas[i + 1]
            x_next = x + (sigmas[i + 1] - sigma_hat) * (d + d_next) / 2
        x = x_next
    assert any(s > ours.sigmas[k] for k, s in enumerate(ours.sigma_hats))  # the churn did act
    assert torch.allclose(ours.sample(toy_model, noise, torch.Generator().manual_seed(4)), x, atol=1e-9)


# --- order of accuracy on Gaussian data, where the ODE is solved exactly --------------------------------


def gaussian_problem(diffusion: GaussianDiffusion, mu: float = 0.3, s: float = 0.5):
    """x_0 ~ N(μ, s²): E[x_0 | x̃] = μ + s²/(s² + σ²)·(x̃ − μ), and the ODE keeps (x̃ − μ)/sqrt(s² + σ²) constant."""

    def model(x, t):
        sigma = sigma_at(diffusion, t)
        x_ve = x * math.sqrt(1 + sigma**2)
        x0 = mu + s**2 / (s**2 + sigma**2) * (x_ve - mu)
        return (x_ve - x0) / sigma

    def exact(noise, sigma_from, sigma_to):
        x_ve = noise * math.sqrt(1 + sigma_from**2)
        end = mu + (x_ve - mu) * math.sqrt((s**2 + sigma_to**2) / (s**2 + sigma_from**2))
        return end / math.sqrt(1 + sigma_to**2)

    return model, exact


ORDERS = {"euler": 1, "heun": 2, "dpm_solver": 2, "dpm_solver_3m": 3, "unipc": 3, "unipc_3": 4}


def convergence(solver: str, nfes=(16, 32, 64, 128)) -> list[float]:
    """The error at t = 0 (the end of the `log_snr` schedule, so no final jump to σ = 0 blurs it) as NFE doubles."""
    diffusion = GaussianDiffusion(linear_betas(1000))
    model, exact = gaussian_problem(diffusion)
    noise = torch.randn(256, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for nfe in nfes:
        kwargs = {} if solver in ("euler", "heun") else {"lower_order_final": False}
        factory = build_option("sampler", solver)
        sampler = factory(diffusion, steps=nfe // 2 if solver == "heun" else nfe, spacing="log_snr", **kwargs)
        assert sampler.network_evaluations == nfe
        out = sampler.sample(model, noise)
        errors.append(float((out - exact(noise, sampler.sigmas[0], sampler.sigmas[-1])).abs().max()))
    return errors


@pytest.mark.parametrize("solver", list(ORDERS))
def test_each_ode_solver_converges_at_least_at_its_order(solver):
    """log2 of the error ratio per doubling of NFE (64 → 128): Euler 1.0, Heun 2.0, DPM-Solver++ 2M 2.0; 3M at
    least 3 (4.0 measured: on this problem its error constant at order 3 vanishes). UniPC's corrector raises its
    predictor's order by one (Zhao et al. Theorem 3.1): UniPC-2 converges at 3.0, UniPC-3 at 3.7 (→ 3.9 at 256)."""
    errors = convergence(solver)
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert orders[-1] > ORDERS[solver] - 0.35, (errors, orders)
    assert solver == "dpm_solver_3m" or orders[-1] < ORDERS[solver] + 0.35, (errors, orders)


def test_3m_at_diffusers_weight_is_second_order(monkeypatch):
    """With D2 at the weight of diffusers' and k-diffusion's 3M, the Gaussian test measures order 2."""
    monkeypatch.setattr(DPMSolverSampler, "D2_WEIGHT", 1)
    errors = convergence("dpm_solver_3m")
    assert math.log2(errors[-2] / errors[-1]) == pytest.approx(2, abs=0.2)


# --- zero terminal SNR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
def test_zero_terminal_snr_is_lin_et_al_algorithm_1_up_to_its_floor(diffusers, make_betas):
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr
    from diffusion_lab.diffusion.schedules import ZERO_SNR_FLOOR

    ours = torch.cumprod(1 - make_betas(1000, zero_terminal_snr=True), 0)
    theirs = torch.cumprod(1 - rescale_zero_terminal_snr(make_betas(1000)), 0)
    assert float(theirs[-1]) == 0 and float(ours[-1]) == pytest.approx(ZERO_SNR_FLOOR, rel=1e-9)
    assert float((ours.sqrt() - theirs.sqrt()).abs().max()) <= ZERO_SNR_FLOOR**0.5 * (1 + 1e-9)  # by ≤ 2⁻¹²
    assert float(ours[0]) == pytest.approx(float(torch.cumprod(1 - make_betas(1000), 0)[0]), rel=1e-12)


@pytest.mark.parametrize("solver", ["ddim", "ddpm", "euler", "heun", "dpm_solver", "dpm_solver_3m", "unipc"])
def test_a_v_prediction_oracle_samples_from_zero_terminal_snr(solver):
    """At ᾱ_{T−1} = 2⁻²⁴ x_T is noise alone; a v-model that knows x_0 still leads every solver to it (through the
    network's ε, in float32, as in sampling)."""
    diffusion = GaussianDiffusion(linear_betas(1000, zero_terminal_snr=True), prediction="v")
    x0 = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def v_oracle(x, t):
        a = diffusion.alphas_cumprod_at(t, 4)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return diffusion.eps_from_output(a.sqrt() * eps - (1 - a).sqrt() * x0, x, t)

    sampler = build_option("sampler", solver)(diffusion, steps=20, spacing="trailing")
    assert sampler.timesteps[0] == 999 and sampler.alphas_cumprod[0] < 1e-7
    assert torch.allclose(sampler.sample(v_oracle, noise, torch.Generator().manual_seed(2)), x0, atol=2e-3)


# --- equal cost: NFE budgets ----------------------------------------------------------------------------


@pytest.mark.parametrize("solver,spacing,nfe,steps", [
    ("ddim", "trailing", 10, 10), ("dpm_solver_3m", "karras", 20, 20), ("unipc", "trailing", 7, 7),
    ("heun", "karras", 10, 5), ("heun", "karras", 9, 5), ("heun", "karras", 1, 1), ("heun", "log_snr", 10, 5),
    ("euler", "karras", 5000, 1000),  # a budget above T steps: all T
])
def test_a_budget_of_network_evaluations_buys_each_solver_its_most_steps(solver, spacing, nfe, steps):
    from diffusion_lab.cost import steps_for_nfe

    diffusion = GaussianDiffusion(linear_betas(1000))
    factory = build_option("sampler", solver, spacing=spacing)
    assert steps_for_nfe(factory, diffusion, nfe) == steps
    assert factory(diffusion, steps=steps).network_evaluations <= nfe


def test_under_guidance_a_budget_buys_half_the_steps_and_too_small_a_one_is_refused():
    from diffusion_lab.cost import steps_for_nfe

    diffusion = GaussianDiffusion(linear_betas(1000))
    assert steps_for_nfe(build_option("sampler", "heun"), diffusion, 20, evaluations_per_call=2) == 5
    with pytest.raises(ConfigError, match=r"nfe=1: allowed values are integers >= 2 for ddim with guidance"):
        steps_for_nfe(build_option("sampler", "ddim"), diffusion, 1, evaluations_per_call=2)


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,message", [
    (lambda d: DPMSolverSampler(d, 10, order=4), "sampler.order=4: allowed values are 2, 3"),
    (lambda d: DPMSolverSampler(d, 10, algorithm="dpmsolver"),
     "sampler.algorithm='dpmsolver': allowed values are dpmsolver++, sde-dpmsolver++"),
    (lambda d: DPMSolverSampler(d, 10, order=3, algorithm="sde-dpmsolver++"),
     "sampler.order=3: sampler.algorithm=sde-dpmsolver++ allows 2"),
    (lambda d: UniPCSampler(d, 10, order=1), "sampler.order=1: allowed values are 2, 3"),
    (lambda d: HeunSampler(d, 10, s_churn=-1.0), "sampler.s_churn=-1.0: allowed values are numbers >= 0"),
    (lambda d: EulerSampler(d, 10, spacing="cosine"),
     "sampler.spacing='cosine': allowed values are trailing, linspace, leading, karras, exponential, log_snr"),
    (lambda d: EulerSampler(d, 10, dynamic_threshold=1.0),
     "sampler.dynamic_threshold=1.0: allowed values are numbers > 0 and < 1 or None"),
    (lambda d: EulerSampler(d, 10, clip_denoised=True, dynamic_threshold=0.9),
     "sampler.dynamic_threshold=0.9: allowed only with sampler.clip_denoised=false"),
    (lambda d: HeunSampler(d, 0), "steps=0: 0 not allowed; step counts are integers 1..T=1000"),
])
def test_bad_solver_settings_are_refused_in_one_line(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")) as info:
        make(GaussianDiffusion(linear_betas(1000)))
    assert "\n" not in str(info.value)


def test_the_training_grids_take_nfe_budgets_too():
    from types import SimpleNamespace

    from diffusion_lab.callbacks import SampleGrid

    grid = SampleGrid("unused", sampler=build_option("sampler", "heun"), nfe=[5, 6, 10])
    samplers = grid.samplers(SimpleNamespace(diffusion=GaussianDiffusion(linear_betas(100))))
    assert [(s.label, s.num_steps, s.network_evaluations) for s in samplers] == [
        ("ddpm", 100, 100), ("heun+karras", 3, 5), ("heun+karras", 5, 9)]  # 6 buys what 5 does: one grid
