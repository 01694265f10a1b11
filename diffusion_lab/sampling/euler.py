"""Euler samplers of the probability-flow ODE in σ (Karras et al. 2022, Algorithm 1), deterministic and ancestral.

Both work on x̃ = x/sqrt(ᾱ) = x_0 + σ·ε, whose ODE is dx̃/dσ = (x̃ − x̂_0)/σ = ε̂, and hand back x = x̃/sqrt(1 + σ²).
On the same levels the deterministic one is DDIM at η = 0 and the ancestral one DDIM at η = 1 (tests check
both); they are here under the names of diffusers and k-diffusion, and for the step schedules in σ.
"""

import math

from diffusion_lab.sampling.base import Sampler


class EulerSampler(Sampler):
    """x̃_{i+1} = x̃_i + (σ_{i+1} − σ_i)·d_i with d_i = (x̃_i − x̂_0)/σ_i: one evaluation per step."""

    name = "euler"

    def step(self, eps, i, x, generator=None):
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        x0 = self.predict_x0(eps, i, x)
        d = (x * math.sqrt(1 + sigma**2) - x0) / sigma
        return (x0 + sigma_next * d) / math.sqrt(1 + sigma_next**2)


class EulerAncestralSampler(Sampler):
    """An Euler step down to σ_down, then fresh noise up to σ_{i+1}: σ_up = sqrt(σ_{i+1}²·(σ_i² − σ_{i+1}²)/σ_i²),
    σ_down = sqrt(σ_{i+1}² − σ_up²) (k-diffusion's `get_ancestral_step` at η = 1); no noise at the last step."""

    name = "euler_ancestral"

    def step(self, eps, i, x, generator=None):
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        sigma_up = min(sigma_next, math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x0 = self.predict_x0(eps, i, x)
        x_next = x0 + sigma_down * (x * math.sqrt(1 + sigma**2) - x0) / sigma
        if sigma_up > 0:
            x_next = x_next + sigma_up * self.noise_like(x, generator)
        return x_next / math.sqrt(1 + sigma_next**2)
