"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++"): multistep solvers of the diffusion ODE or SDE in λ = log(α/σ)."""

import math

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.errors import ConfigError
from diffusion_lab.sampling.base import Sampler
from diffusion_lab.sampling.spacing import half_log_snr, vp_scales

FEW_STEPS = 15  # below this many steps, `lower_order_final` lowers the order of the last steps (as diffusers)


class DPMSolverSampler(Sampler):
    """With α = sqrt(ᾱ), σ = sqrt(1 − ᾱ), data predictions D = x̂_0 and h = λ_s − λ_t for the step t → s:

        1st order:  x_s = (σ_s/σ_t)·x_t − α_s·(e^{−h} − 1)·D_t
        2M:         … − ½·α_s·(e^{−h} − 1)·D1,   D1 = (D_t − D_prev)/r_0,  r_0 = h_prev/h          (Algorithm 2)
        3M:         x_s = (σ_s/σ_t)·x_t − α_s·(e^{−h} − 1)·D_t + α_s·((e^{−h} − 1)/h + 1)·D1
                          − α_s·((e^{−h} − 1 + h)/h² − ½)·D2, with D1 ≈ h·D' and D2 ≈ h²·D'' from the last three D
        2M SDE:     x_s = (σ_s/σ_t)·e^{−h}·x_t + α_s·(1 − e^{−2h})·(D_t + ½·D1) + σ_s·sqrt(1 − e^{−2h})·z

    D2 is twice what diffusers, k-diffusion and the DPM-Solver code use: their (D1_0 − D1_1)/(r_0 + r_1) is
    h²·D''/2, and the ODE's Taylor term needs h²·D''; at half weight 3M converges at order 2, not 3
    (tests/test_solvers.py measures both). The first steps warm up at lower order; the step to σ = 0 is first
    order and returns D_t; with `lower_order_final` and fewer than 15 steps the last two steps are at most first
    and second order.
    """

    name = "dpm_solver"
    D2_WEIGHT = 2  # D2 = D2_WEIGHT·(D1_0 − D1_1)/(r_0 + r_1) ≈ h²·D''; diffusers' and k-diffusion's 3M use 1

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = 20, spacing: str = "trailing",
                 order: int = 2, algorithm: str = "dpmsolver++", lower_order_final: bool = True,
                 clip_denoised: bool = False, dynamic_threshold: float | None = None):
        rules.SOLVER_ORDER.check("sampler.order", order)
        rules.DPM_ALGORITHM.check("sampler.algorithm", algorithm)
        rules.BOOLEAN.check("sampler.lower_order_final", lower_order_final)
        if algorithm == "sde-dpmsolver++" and order == 3:
            raise ConfigError("sampler.order=3: sampler.algorithm=sde-dpmsolver++ allows 2 (2M SDE)")
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        self.order, self.stochastic, self.lower_order_final = order, algorithm == "sde-dpmsolver++", lower_order_final
        self.lambdas = [half_log_snr(s) for s in self.sigmas]
        self.reset()

    @property
    def variant(self) -> str:
        return "dpm_solver_sde" if self.stochastic else "dpm_solver_3m" if self.order == 3 else self.name

    def reset(self) -> None:
        self.history = []  # the latest data predictions, newest last

    def order_at(self, i: int) -> int:
        K = self.num_steps
        cap = self.order
        if self.sigmas[i + 1] == 0 or (self.lower_order_final and K < FEW_STEPS and i == K - 1):
            cap = 1
        elif self.lower_order_final and K < FEW_STEPS and i == K - 2:
            cap = min(cap, 2)
        return min(cap, len(self.history))

    def step(self, eps, i, x, generator=None):
        self.history = [*self.history[-(self.order - 1):], self.predict_x0(eps, i, x)]
        if self.sigmas[i + 1] == 0:  # λ_s = ∞: the solution is the data prediction itself
            return self.history[-1]
        order, lam = self.order_at(i), self.lambdas
        h = lam[i + 1] - lam[i]
        (a_s, s_s), (_, s_t) = vp_scales(self.sigmas[i + 1]), vp_scales(self.sigmas[i])
        d0 = self.history[-1]
        d1 = d2 = 0
        if order >= 2:
            r0 = (lam[i] - lam[i - 1]) / h
            d1_0 = (d0 - self.history[-2]) / r0
            d1 = d1_0
            if order == 3:
                r1 = (lam[i - 1] - lam[i - 2]) / h
                d1_1 = (self.history[-2] - self.history[-3]) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = self.D2_WEIGHT * (d1_0 - d1_1) / (r0 + r1)
        if self.stochastic:
            decay = -math.expm1(-2 * h)  # 1 − e^{−2h}
            x_s = (s_s / s_t * math.exp(-h)) * x + a_s * decay * (d0 + 0.5 * d1)
            return x_s + s_s * math.sqrt(decay) * self.noise_like(x, generator)
        phi = math.expm1(-h)  # e^{−h} − 1
        x_s = (s_s / s_t) * x - a_s * phi * d0
        if order == 2:
            return x_s - 0.5 * a_s * phi * d1
        if order == 3:
            return x_s + a_s * (phi / h + 1) * d1 - a_s * ((phi + h) / h**2 - 0.5) * d2
        return x_s
