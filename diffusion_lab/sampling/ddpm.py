"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), respaced to K ≤ T steps as in improved-diffusion."""

import math

import torch

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.errors import ConfigError
from diffusion_lab.sampling.base import Sampler


class DDPMSampler(Sampler):
    """x_prev ~ q(x_prev | x_t, x̂_0) of the respaced chain, with no noise at the last step.

    Respacing (Nichol & Dhariwal 2021, §4): the visited timesteps τ form a Markov chain of their own with
    β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i+1}}, so its cumulative alphas are the original ᾱ at τ; the model is still called
    with the original t = τ_i. With K = T this is exactly the original chain:
    x_{t−1} = 1/sqrt(α_t)·(x_t − β_t/sqrt(1−ᾱ_t)·ε) + σ_t·z. σ² is the posterior variance β̃' (`fixed_small`),
    β' (`fixed_large`), or the model's own at the visited timesteps (`learned`, a model.learn_sigma model:
    exp(v·log β' + (1 − v)·log β̃'), as improved-diffusion respaces it); `auto` is learned where the model
    learned it, else fixed_small.
    """

    name = "ddpm"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, spacing: str = "trailing",
                 variance: str = "auto", clip_denoised: bool = False, dynamic_threshold: float | None = None):
        rules.VARIANCE.check("sampler.variance", variance)
        if variance == "learned" and not diffusion.learn_sigma:
            raise ConfigError("sampler.variance=learned: allowed only for a model trained with model.learn_sigma="
                              "true; this one has fixed variances (allowed: auto, fixed_small, fixed_large)")
        self.requested_variance = variance
        if variance == "auto":
            variance = "learned" if diffusion.learn_sigma else "fixed_small"
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        self.variance, self.learned_variance = variance, variance == "learned"
        self.betas, self.coef_x0, self.coef_xt, self.noise_stds, self.log_variance_bounds = [], [], [], [], []
        for i, (a, a_prev) in enumerate(zip(self.alphas_cumprod, self.alphas_cumprod_prev)):
            beta = 1 - a / a_prev
            posterior_variance = (1 - a_prev) / (1 - a) * beta
            last = i == self.num_steps - 1
            self.betas.append(beta)
            self.coef_x0.append(math.sqrt(a_prev) * beta / (1 - a))  # posterior mean coefficients, Ho eq. 7
            self.coef_xt.append(math.sqrt(1 - beta) * (1 - a_prev) / (1 - a))
            self.noise_stds.append(0.0 if last else math.sqrt(posterior_variance if variance == "fixed_small" else beta))
            self.log_variance_bounds.append((math.log(beta), math.log(posterior_variance) if not last else None))

    @property
    def variant(self) -> str:
        """ddpm, or the preset of a variance pinned whatever the model learned (ddpm_fixed_small, ddpm_fixed_large)."""
        return f"ddpm_{self.requested_variance}" if self.requested_variance in rules.FIXED_VARIANCES else self.name

    def learned_std(self, i: int, variance_output: torch.Tensor) -> torch.Tensor:
        """The model's σ at evaluation i before the last: exp(½·(v·log β' + (1 − v)·log β̃')), v = (r + 1)/2 for its
        variance output r (Nichol & Dhariwal 2021, eq. 15, on the respaced chain)."""
        log_beta, log_posterior_variance = self.log_variance_bounds[i]
        v = (variance_output + 1) / 2
        return torch.exp(0.5 * (v * log_beta + (1 - v) * log_posterior_variance))

    def step(self, eps, i, x, generator=None, variance_output=None):
        mean = self.coef_x0[i] * self.predict_x0(eps, i, x) + self.coef_xt[i] * x
        if self.noise_stds[i] == 0:
            return mean
        std = self.learned_std(i, variance_output) if self.learned_variance else self.noise_stds[i]
        return mean + std * self.noise_like(x, generator)
