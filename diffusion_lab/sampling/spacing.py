"""Which noise levels a K-step sampler visits: the step schedule, an axis of its own, usable with every solver.

Fewer steps than T must cover the whole chain, from (near) T−1 down to (near) 0: running only the last K
steps of the chain would start from an x_K that is not pure noise. A schedule gives K + 1 levels as σ = sqrt((1 −
ᾱ)/ᾱ), noisiest first; the network is evaluated at the first K, and the chain ends on the last (σ = 0: x_0).

- In t, as diffusers' `timestep_spacing` (integer timesteps): `trailing`, `linspace`, `leading`.
- In σ, between the trained levels (the network's t interpolated from log σ, as diffusers' `_sigma_to_t`):
  `karras` (Karras et al. 2022, eq. 5, ρ = 7) and `exponential` (uniform in log σ), each from σ_max = σ(T−1)
  to σ_min = σ(0), then 0; `log_snr`: K + 1 levels uniform in λ = log(ᾱ/(1 − ᾱ)) = −2·log σ from λ(T−1) to
  λ(0), the last being the end (DPM-Solver's "logSNR" steps, Lu et al. 2022): the same grid as `exponential`
  but with every evaluation spent on the ODE and none on a jump from σ_min to 0; x keeps t = 0's noise.
"""

import math
from dataclasses import dataclass

import numpy as np

from diffusion_lab import rules

KARRAS_RHO = 7.0


def spaced_timesteps(T: int, K: int, spacing: str = "trailing") -> list[int]:
    """K distinct timesteps of {0..T−1} in descending order, for a spacing in t.

    - trailing (default; Lin et al. 2024): T−1, T−1−T/K, …; the first step is always pure noise.
    - linspace: K points from T−1 to 0 inclusive, rounded (T−1 alone for K = 1).
    - leading: 0, T//K, 2·T//K, … reversed (DDIM's original choice); starts below T−1 when K does not divide
      T evenly into the top of the chain, e.g. at 980 for K = 50 of T = 1000.
    """
    rules.TIME_SPACING.check("sampler.spacing", spacing)
    rules.check_step_counts("steps", K, T)
    if spacing == "trailing":
        # T − i·T/K for i < K: diffusers' np.arange(T, 0, −T/K) has K + 1 entries (the last −1) for K = 61, 103, …
        steps = np.round(T - np.arange(K) * (T / K)).astype(np.int64) - 1
    elif spacing == "linspace":  # np.linspace gives [0] for K = 1; one step must start from noise
        steps = np.linspace(0, T - 1, K).round().astype(np.int64)[::-1] if K > 1 else np.array([T - 1])
    else:
        steps = (np.arange(K) * (T // K)).astype(np.int64)[::-1]
    return [int(t) for t in steps]


@dataclass(frozen=True)
class NoiseLevels:
    """`sigmas`: the K + 1 levels σ_0 > … > σ_K of a chain (σ_K = 0: x_0); `timesteps`: the network's t at the
    first K (ints for a spacing in t, floats between trained timesteps otherwise)."""

    sigmas: list[float]
    timesteps: list[float | int]


class SigmaToTimestep:
    """t(σ) of a trained schedule, linear in log σ between the trained timesteps (diffusers' `_sigma_to_t`), and
    its inverse σ(t); clamped to [σ(0), σ(T−1)]."""

    def __init__(self, alphas_cumprod: np.ndarray):
        self.log_sigmas = 0.5 * np.log((1 - alphas_cumprod) / alphas_cumprod)  # increasing in t

    def __call__(self, sigma: float) -> float:
        return float(np.interp(np.log(sigma), self.log_sigmas, np.arange(len(self.log_sigmas))))

    def sigma(self, t: float) -> float:
        return float(np.exp(np.interp(t, np.arange(len(self.log_sigmas)), self.log_sigmas)))


def sigma_of(alpha_bar: float) -> float:
    """σ = sqrt((1 − ᾱ)/ᾱ), the noise level of x_t/sqrt(ᾱ) (Karras et al.'s variance-exploding form)."""
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def alpha_bar_of(sigma: float) -> float:
    """ᾱ = 1/(1 + σ²); 1 at σ = 0."""
    return 1 / (1 + sigma * sigma)


def vp_scales(sigma: float) -> tuple[float, float]:
    """(α, σ_VP) = (1, σ)/sqrt(1 + σ²): the level σ in the form x = α·x_0 + σ_VP·ε that the samplers carry."""
    scale = 1 / (1 + sigma * sigma) ** 0.5
    return scale, sigma * scale


def half_log_snr(sigma: float) -> float:
    """λ = log(α/σ_VP) = −log σ, DPM-Solver's and UniPC's time; ∞ at σ = 0."""
    return -math.log(sigma) if sigma > 0 else math.inf


def noise_levels(alphas_cumprod: np.ndarray, K: int, spacing: str = "trailing") -> NoiseLevels:
    """The levels of a K-step chain over a schedule's ᾱ_0..ᾱ_{T−1} (float64)."""
    rules.SPACING.check("sampler.spacing", spacing)
    T = len(alphas_cumprod)
    if spacing in rules.TIME_SPACINGS:
        timesteps = spaced_timesteps(T, K, spacing)
        return NoiseLevels([sigma_of(float(alphas_cumprod[t])) for t in timesteps] + [0.0], timesteps)
    rules.check_step_counts("steps", K, T)
    to_t = SigmaToTimestep(alphas_cumprod)
    sigma_min, sigma_max = sigma_of(float(alphas_cumprod[0])), sigma_of(float(alphas_cumprod[-1]))
    ramp = np.linspace(0, 1, K)
    if spacing == "karras":
        lo, hi = sigma_min ** (1 / KARRAS_RHO), sigma_max ** (1 / KARRAS_RHO)
        sigmas = [*(hi + ramp * (lo - hi)) ** KARRAS_RHO, 0.0]
    elif spacing == "exponential":
        sigmas = [*np.exp(np.log(sigma_max) + ramp * (np.log(sigma_min) - np.log(sigma_max))), 0.0]
    else:  # log_snr: λ = −2·log σ uniform over K + 1 levels, ending on σ_min
        sigmas = [*np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), K + 1))]
    sigmas = [float(s) for s in sigmas]
    last = K if spacing == "log_snr" else K - 1
    if last > 0:
        sigmas[last] = sigma_min  # the ends exactly, not as rounded by the powers above
    sigmas[0] = sigma_max
    return NoiseLevels(sigmas, [to_t(s) for s in sigmas[:K]])
