"""Ancestral DDPM sampling over all T steps (Ho et al. 2020, Algorithm 2)."""

import torch

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.sampling.base import Sampler

VARIANCES = ("fixed_small", "fixed_large")


class DDPMSampler(Sampler):
    """x_{t−1} = 1/sqrt(α_t)·(x_t − β_t/sqrt(1−ᾱ_t)·ε_θ(x_t, t)) + σ_t·z, with no noise at t = 0.

    σ_t² is β̃_t (`fixed_small`, the posterior variance) or β_t (`fixed_large`); both appear in Ho et al. §3.2.
    """

    def __init__(self, diffusion: GaussianDiffusion, variance: str = "fixed_small"):
        super().__init__(diffusion)
        if variance not in VARIANCES:
            raise ValueError(f"sampler.variance={variance!r}: allowed values are {', '.join(VARIANCES)}")
        self.sigmas = (diffusion.posterior_variance if variance == "fixed_small" else diffusion.betas).sqrt()
        self.eps_coefs = diffusion.betas / diffusion.sqrt_one_minus_alphas_cumprod
        self.recip_sqrt_alphas = diffusion.alphas.rsqrt()
        self.timesteps = list(range(diffusion.num_timesteps - 1, -1, -1))

    def step(self, eps, i, x, generator=None):
        t = self.timesteps[i]
        mean = self.recip_sqrt_alphas[t] * (x - self.eps_coefs[t] * eps)
        if t == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return mean + self.sigmas[t] * z
