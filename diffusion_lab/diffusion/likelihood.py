"""The two densities of the variational bound: the KL between Gaussians and the discretized Gaussian decoder.

Both work per pixel, in nats, in float64 (the decoder's bins are narrow against its σ at t ≈ 0, where float32
loses the tail). Images live in [−1, 1] with the 256 levels of 8-bit data at k·2/255 − 1 (Ho et al. 2020, §3.3).
"""

import math

import torch

BIN_HALF_WIDTH = 1 / 255  # half the distance between two of the 256 levels in [−1, 1]


def normal_kl(mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor,
              log_var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^log_var1) ‖ N(mean2, e^log_var2)) elementwise:
    ½·(log_var2 − log_var1 + e^(log_var1 − log_var2) + (mean1 − mean2)²·e^−log_var2 − 1)."""
    return 0.5 * (log_var2 - log_var1 + torch.exp(log_var1 - log_var2)
                  + (mean1 - mean2) ** 2 * torch.exp(-log_var2) - 1)


def log_normal_cdf_difference(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(Φ(upper) − Φ(lower)) for lower < upper, accurate in both tails: above 0 it is taken as
    log(Φ(−lower) − Φ(−upper)), and the difference as log Φ(b) + log(1 − e^(log Φ(a) − log Φ(b)))."""
    flip = lower > 0
    a = torch.where(flip, -upper, lower)
    b = torch.where(flip, -lower, upper)
    log_a, log_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return log_b + torch.log1p(-torch.exp(log_a - log_b))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per pixel of 8-bit data x in [−1, 1] under N(mean, e^(2·log_scale)) integrated over x's bin
    (x ± 1/255), the outer bins reaching to ∓∞ so that the 256 probabilities sum to 1 (Ho et al. 2020, eq. 13)."""
    x, mean, log_scale = (v.double() for v in torch.broadcast_tensors(x, mean, log_scale))
    inverse_scale = torch.exp(-log_scale)
    lower = torch.where(x < -1 + BIN_HALF_WIDTH, -math.inf, (x - BIN_HALF_WIDTH - mean) * inverse_scale)
    upper = torch.where(x > 1 - BIN_HALF_WIDTH, math.inf, (x + BIN_HALF_WIDTH - mean) * inverse_scale)
    return log_normal_cdf_difference(lower, upper)


def to_bits_per_dim(nats: torch.Tensor) -> torch.Tensor:
    """Per-pixel nats of each image (batch first) as that image's mean in bits."""
    return nats.flatten(1).mean(1) / math.log(2)
