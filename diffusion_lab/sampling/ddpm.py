"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), respaced to K ≤ T steps as in improved-diffusion."""

import math

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.sampling.base import Sampler


class DDPMSampler(Sampler):
    """x_prev ~ q(x_prev | x_t, x̂_0) of the respaced chain, with no noise at the last step.

    Respacing (Nichol & Dhariwal 2021, §4): the visited timesteps τ form a Markov chain of their own with
    β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i+1}}, so its cumulative alphas are the original ᾱ at τ; the model is still called
    with the original t = τ_i. With K = T this is exactly the original chain:
    x_{t−1} = 1/sqrt(α_t)·(x_t − β_t/sqrt(1−ᾱ_t)·ε) + σ_t·z. σ² is the posterior variance β̃' (`fixed_small`)
    or β' (`fixed_large`).
    """

    name = "ddpm"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, spacing: str = "trailing",
                 variance: str = "fixed_small", clip_denoised: bool = False, dynamic_threshold: float | None = None):
        rules.VARIANCE.check("sampler.variance", variance)
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        self.betas, self.coef_x0, self.coef_xt, self.noise_stds = [], [], [], []
        for i, (a, a_prev) in enumerate(zip(self.alphas_cumprod, self.alphas_cumprod_prev)):
            beta = 1 - a / a_prev
            posterior_variance = (1 - a_prev) / (1 - a) * beta
            last = i == self.num_steps - 1
            self.betas.append(beta)
            self.coef_x0.append(math.sqrt(a_prev) * beta / (1 - a))  # posterior mean coefficients, Ho eq. 7
            self.coef_xt.append(math.sqrt(1 - beta) * (1 - a_prev) / (1 - a))
            self.noise_stds.append(0.0 if last else math.sqrt(posterior_variance if variance == "fixed_small" else beta))

    def step(self, eps, i, x, generator=None):
        mean = self.coef_x0[i] * self.predict_x0(eps, i, x) + self.coef_xt[i] * x
        if self.noise_stds[i] == 0:
            return mean
        return mean + self.noise_stds[i] * self.noise_like(x, generator)
