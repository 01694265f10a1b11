"""Heun's second-order sampler (Karras et al. 2022, Algorithm 2), with their stochastic churn."""

import math

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.sampling.base import Sampler


class HeunSampler(Sampler):
    """On x̃ = x/sqrt(ᾱ) (see `euler`): step i first raises σ_i to σ̂_i = σ_i·(1 + γ_i) with fresh noise of
    variance (σ̂_i² − σ_i²)·S_noise², γ_i = min(S_churn/K, √2 − 1) where S_tmin ≤ σ_i ≤ S_tmax (0 elsewhere; σ̂ is
    kept at most the trained σ_max, where the network's t would be clamped); then an Euler step to σ_{i+1} and,
    unless σ_{i+1} = 0, the trapezoidal correction with d at the Euler point: x̃_{i+1} = x̃ + (σ_{i+1} − σ̂)·(d + d')/2.

    Each step's two evaluations are listed in `timesteps` (as diffusers' HeunDiscreteScheduler does), so a
    K-step chain costs 2K − 1 network evaluations (the last step, to σ = 0, is Euler). The churn noise is added at
    the end of the step before, so x is always at the level of the next evaluation. S_churn = 0 is the ODE.
    """

    name = "heun"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = 18, spacing: str = "karras",
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 clip_denoised: bool = False, dynamic_threshold: float | None = None):
        for key, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax), ("s_noise", s_noise)):
            rules.CHURN.check(f"sampler.{key}", value)
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        K, sigma_max = self.num_steps, self.timestep_of.sigma(diffusion.num_timesteps - 1)
        level_timesteps = [*self.timesteps, self.timestep_of(self.sigmas[K]) if self.sigmas[K] > 0 else None]
        self.s_noise, self.sigma_hats, self.phases, timesteps = s_noise, [], [], []
        for k, sigma in enumerate(self.sigmas[:K]):
            gamma = min(s_churn / K, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
            sigma_hat = min(sigma * (1 + gamma), max(sigma_max, sigma))
            self.sigma_hats.append(sigma_hat)
            self.phases.append((k, False))
            timesteps.append(level_timesteps[k] if sigma_hat == sigma else self.timestep_of(sigma_hat))
            if self.sigmas[k + 1] > 0:
                self.phases.append((k, True))
                timesteps.append(level_timesteps[k + 1])
        self.timesteps = timesteps
        self.alphas_cumprod = [1 / (1 + (self.sigmas[k + 1] if second else self.sigma_hats[k]) ** 2)
                               for k, second in self.phases]
        self.reset()

    def reset(self) -> None:
        self.euler_start = None  # (x̃, d, σ̂) of the step whose correction is due

    def step(self, eps, i, x, generator=None):
        k, second = self.phases[i]
        sigma_next = self.sigmas[k + 1]
        x0 = self.predict_x0(eps, i, x)
        if not second:
            sigma_hat = self.sigma_hats[k]
            x_ve = x * math.sqrt(1 + sigma_hat**2)
            d = (x_ve - x0) / sigma_hat
            x_next = x_ve + (sigma_next - sigma_hat) * d
            if sigma_next > 0:  # the correction follows at the next evaluation
                self.euler_start = (x_ve, d, sigma_hat)
            return x_next / math.sqrt(1 + sigma_next**2)
        x_ve, d, sigma_hat = self.euler_start
        d_next = (x * math.sqrt(1 + sigma_next**2) - x0) / sigma_next
        x_next = x_ve + (sigma_next - sigma_hat) * (d + d_next) / 2
        level = sigma_next
        if k + 1 < self.num_steps and self.sigma_hats[k + 1] > sigma_next:  # the next step's churn
            level = self.sigma_hats[k + 1]
            x_next = x_next + self.s_noise * math.sqrt(level**2 - sigma_next**2) * self.noise_like(x, generator)
        return x_next / math.sqrt(1 + level**2)
