"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep ODE solver."""

import math

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.sampling.base import Sampler


class DPMSolverSampler(Sampler):
    """Solves the probability-flow ODE in λ = log(α/σ) (α = sqrt(ᾱ), σ = sqrt(1 − ᾱ)) with data prediction
    D = x̂_0. With h = λ_s − λ_t for the step t → s:

        first order:  x_s = (σ_s/σ_t)·x_t − α_s·(e^{−h} − 1)·D_t
        2M:           x_s = (σ_s/σ_t)·x_t − α_s·(e^{−h} − 1)·(D_t + ½·(D_t − D_prev)/r),  r = h_prev/h

    The first step is first order, and so is the last, which lands on σ = 0 and returns D_t (diffusers'
    `final_sigmas_type="zero"`, midpoint variant).
    """

    name = "dpm_solver"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = 20, spacing: str = "trailing",
                 clip_denoised: bool = False):
        super().__init__(diffusion, steps, spacing, clip_denoised)
        self.lambdas = [0.5 * math.log(a / (1 - a)) for a in self.alphas_cumprod]
        self.reset()

    def reset(self) -> None:
        self.prev_x0, self.prev_h = None, None

    def step(self, eps, i, x, generator=None):
        x0 = self.predict_x0(eps, i, x)
        a, a_prev = self.alphas_cumprod[i], self.alphas_cumprod_prev[i]
        if a_prev >= 1.0:  # σ_s = 0: the solution is the data prediction itself
            self.reset()
            return x0
        h = self.lambdas[i + 1] - self.lambdas[i]
        d = x0
        if self.prev_x0 is not None:
            r = self.prev_h / h
            d = x0 + 0.5 * (x0 - self.prev_x0) / r
        self.prev_x0, self.prev_h = x0, h
        alpha_s, sigma_s, sigma_t = math.sqrt(a_prev), math.sqrt(1 - a_prev), math.sqrt(1 - a)
        return (sigma_s / sigma_t) * x - alpha_s * math.expm1(-h) * d
