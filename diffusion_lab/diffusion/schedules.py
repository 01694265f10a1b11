"""Noise schedules: each returns the T betas β_0..β_{T-1} of the forward process as float64.

Indices follow improved-diffusion and diffusers: t = 0 is the first (least noisy) step, t = T-1 the last.
Every schedule is checked so that x_T is (nearly) pure noise: ᾱ_{T-1} ≤ MAX_FINAL_ALPHA_CUMPROD.
"""

import math

import torch

from diffusion_lab import rules
from diffusion_lab.errors import ConfigError

MAX_FINAL_ALPHA_CUMPROD = 1e-2
ZERO_SNR_FLOOR = 2.0**-24  # ᾱ_{T−1} of a zero-terminal-SNR schedule: SNR 6·10⁻⁸, σ_max = 4096 (diffusers' floor)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024), Algorithm 1: shift and scale sqrt(ᾱ) so that sqrt(ᾱ_0) is kept and sqrt(ᾱ_{T−1}) is
    sqrt(ZERO_SNR_FLOOR) = 2⁻¹² instead of 0 (which moves no sqrt(ᾱ_t) by more than that), so that σ = sqrt((1 −
    ᾱ)/ᾱ) stays finite for the solvers in σ and λ and x̂_0 survives the ε form in float32."""
    root = torch.cumprod(1 - betas, 0).sqrt()
    floor = ZERO_SNR_FLOOR**0.5
    root = floor + (root - root[-1]) * (root[0] - floor) / (root[0] - root[-1])
    alphas_cumprod = root**2
    return 1 - torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 zero_terminal_snr: bool = False) -> torch.Tensor:
    """DDPM's linear betas (Ho et al. 2020), rescaled by 1000/T so every T ends at the same noise level."""
    _check_T(T)
    rules.BETA.check("schedule.beta_start", beta_start)
    rules.BETA.check("schedule.beta_end", beta_end)
    if beta_start > beta_end:
        raise ConfigError(f"schedule.beta_start={beta_start!r}: allowed values are numbers up to schedule.beta_end="
                          f"{beta_end!r} (the betas grow with t)")
    scale = 1000 / T
    if scale * beta_end >= 1:
        raise ConfigError(
            f"T={T}: schedule=linear rescales beta_end to {scale * beta_end:g} >= 1; "
            f"use T >= {math.floor(1000 * beta_end) + 1} or schedule=cosine"
        )
    betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    return _checked(betas, "linear", T, zero_terminal_snr)


def betas_from_alphas_cumprod(alpha_bar, T: int, max_beta: float) -> torch.Tensor:
    """β_t = min(1 − ᾱ(t+1)/ᾱ(t), max_beta) for a continuous ᾱ(·) on [0, 1] sampled at t/T."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    a = alpha_bar(t)
    return (1 - a[1:] / a[:-1]).clamp(min=0, max=max_beta)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999, zero_terminal_snr: bool = False) -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17: ᾱ(t) = cos²(((t/T + s)/(1 + s))·π/2) / (same at t=0)."""
    _check_T(T)
    rules.COSINE_OFFSET.check("schedule.s", s)
    rules.MAX_BETA.check("schedule.max_beta", max_beta)

    def alpha_bar(u):
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return _checked(betas_from_alphas_cumprod(alpha_bar, T, max_beta), "cosine", T, zero_terminal_snr)


def sigmoid_betas(
    T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999,
    zero_terminal_snr: bool = False,
) -> torch.Tensor:
    """Jabri et al. (2022), RIN: ᾱ(t) follows a rescaled sigmoid of (start + t/T·(end − start))/τ."""
    _check_T(T)
    rules.SIGMOID_END.check("schedule.start", start)
    rules.SIGMOID_END.check("schedule.end", end)
    rules.SIGMOID_TAU.check("schedule.tau", tau)
    rules.MAX_BETA.check("schedule.max_beta", max_beta)
    if start >= end:
        raise ConfigError(f"schedule.start={start!r}: allowed values are numbers below schedule.end={end!r}")
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))

    def alpha_bar(u):
        return (v_end - torch.sigmoid((start + u * (end - start)) / tau)) / (v_end - v_start)

    # ᾱ(1) = 0 exactly, so the last beta is max_beta; the clamp keeps ᾱ(t) > 0 for the ratio.
    return _checked(betas_from_alphas_cumprod(lambda u: alpha_bar(u).clamp(min=1e-12), T, max_beta), "sigmoid", T,
                    zero_terminal_snr)


def _check_T(T) -> None:
    rules.T.check("T", T)


def _checked(betas: torch.Tensor, name: str, T: int, zero_terminal_snr: bool = False) -> torch.Tensor:
    """`betas`, rescaled to zero terminal SNR if asked, once they are in (0, 1) and end at pure noise."""
    rules.BOOLEAN.check("schedule.zero_terminal_snr", zero_terminal_snr)
    if zero_terminal_snr:
        if T < 2:
            raise ConfigError(f"T={T}: schedule.zero_terminal_snr=true needs T >= 2")
        betas = rescale_zero_terminal_snr(betas)
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ConfigError(f"T={T}: schedule={name} gives betas outside (0, 1); choose another schedule or T")
    final = float(torch.cumprod(1 - betas, 0)[-1])
    if final > MAX_FINAL_ALPHA_CUMPROD:
        raise ConfigError(
            f"T={T}: schedule={name} leaves alphas_cumprod[T-1] = {final:.3g} > {MAX_FINAL_ALPHA_CUMPROD:g}, "
            "so x_T is not pure noise; raise T or choose schedule=cosine"
        )
    return betas
