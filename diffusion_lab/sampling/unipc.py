"""UniPC (Zhao et al. 2023): a multistep predictor (UniP) with a corrector (UniC) that reuses the next evaluation."""

import math

import numpy as np
import torch

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.sampling.base import Sampler
from diffusion_lab.sampling.spacing import half_log_snr, vp_scales


def bh2_coefficients(rks: list[float], h: float, order: int, predictor: bool) -> tuple[float, float, list[float]]:
    """(h·φ_1(−h) = e^{−h} − 1, B(h) = e^{−h} − 1, the ρ weights of the divided differences) of the data-prediction
    B(h) = bh2 variant (Zhao et al. eq. 11 and Algorithm 2; diffusers' `multistep_uni_{p,c}_bh_update`).

    `rks` are r_k = (λ_{s_k} − λ_s0)/h of the earlier evaluations, then 1 for the newest (the corrector's).
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = h_phi_1
    h_phi_k, factorial, rows, rhs = h_phi_1 / hh - 1, 1, [], []
    for k in range(1, order + 1):
        rows.append([r ** (k - 1) for r in rks])
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R, b = np.array(rows), np.array(rhs)
    if predictor:
        rhos = [0.5] if order == 2 else list(np.linalg.solve(R[:-1, :-1], b[:-1])) if order > 2 else []
    else:
        rhos = [0.5] if order == 1 else list(np.linalg.solve(R, b))
    return h_phi_1, b_h, [float(r) for r in rhos]


class UniPCSampler(Sampler):
    """UniPC-bh2 of `order` 2 or 3 with data prediction. At evaluation i the corrector first refines x_i with the
    new D_i (UniC, no extra evaluation), then the predictor steps to the next level (UniP) from the last `order`
    data predictions. With `lower_order_final` the last steps use at most the steps left as their order (as
    diffusers); the step to σ = 0 is first order and returns D. The first steps warm up at lower order.
    """

    name = "unipc"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = 20, spacing: str = "trailing",
                 order: int = 2, lower_order_final: bool = True, clip_denoised: bool = False,
                 dynamic_threshold: float | None = None):
        rules.SOLVER_ORDER.check("sampler.order", order)
        rules.BOOLEAN.check("sampler.lower_order_final", lower_order_final)
        super().__init__(diffusion, steps, spacing, clip_denoised, dynamic_threshold)
        self.order, self.lower_order_final = order, lower_order_final
        self.lambdas = [half_log_snr(s) for s in self.sigmas]
        self.reset()

    @property
    def variant(self) -> str:
        return "unipc_3" if self.order == 3 else self.name

    def reset(self) -> None:
        self.history = []  # the latest data predictions, newest last
        self.last_x, self.last_order = None, 0  # x before the last predictor step, and that step's order

    def update(self, x: torch.Tensor, i: int, target: int, order: int, newest: torch.Tensor | None = None):
        """x at level `target` from x at level i: the predictor (newest None) or, with the newest D at `target`,
        the corrector. `history[-1]` is D at level i, `history[-1 - k]` at level i − k."""
        lam = self.lambdas
        h = lam[target] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, order)]
        d0 = self.history[-1]
        diffs = [(self.history[-1 - k] - d0) / r for k, r in enumerate(rks, 1)]
        h_phi_1, b_h, rhos = bh2_coefficients(rks + [1.0], h, order, predictor=newest is None)
        (alpha, sigma_t), (_, sigma_s) = vp_scales(self.sigmas[target]), vp_scales(self.sigmas[i])
        x_t = (sigma_t / sigma_s) * x - alpha * h_phi_1 * d0
        residual = sum((rho * dk for rho, dk in zip(rhos, diffs)), start=0)
        if newest is not None:
            residual = residual + rhos[-1] * (newest - d0)
        return x_t - alpha * b_h * residual

    def step(self, eps, i, x, generator=None):
        d = self.predict_x0(eps, i, x)
        if self.last_x is not None:  # UniC: x_i again, from x_{i−1} with D_i
            x = self.update(self.last_x, i - 1, i, self.last_order, newest=d)
        self.history = [*self.history[-(self.order - 1):], d]
        if self.sigmas[i + 1] == 0:
            self.last_x = None
            return d
        order = min(self.order, self.num_steps - i) if self.lower_order_final else self.order
        self.last_order = min(order, len(self.history))
        self.last_x = x
        return self.update(x, i, i + 1, self.last_order)
