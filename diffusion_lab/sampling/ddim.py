"""DDIM (Song et al. 2021): the non-Markovian sampler, deterministic at η = 0."""

import math

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.diffusion.parameterization import eps_from
from diffusion_lab.sampling.base import Sampler


class DDIMSampler(Sampler):
    """x_prev = sqrt(ᾱ_prev)·x̂_0 + sqrt(1 − ᾱ_prev − σ²)·ε + σ·z with
    σ = η·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t))·sqrt(1 − ᾱ_t/ᾱ_prev)  (Song et al. eq. 12 and 16).

    η = 0 is deterministic; η = 1 has the variance of the respaced DDPM. With x̂_0 clipped or thresholded, ε is
    re-derived from the bounded x̂_0 (as improved-diffusion does), so the two stay consistent.
    """

    name = "ddim"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = 50, spacing: str = "trailing",
                 eta: float = 0.0, clip_denoised: bool = False, dynamic_threshold: float | None = None):
        rules.ETA.check("sampler.eta", eta)
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        self.eta = eta
        self.noise_stds = [eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
                       for a, ap in zip(self.alphas_cumprod, self.alphas_cumprod_prev)]

    def step(self, eps, i, x, generator=None):
        a, a_prev, sigma = self.alphas_cumprod[i], self.alphas_cumprod_prev[i], self.noise_stds[i]
        x0 = self.predict_x0(eps, i, x)
        if self.bounds_x0:
            eps = eps_from("x0", x0, x, a)
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        return x_prev + sigma * self.noise_like(x, generator) if sigma > 0 else x_prev
