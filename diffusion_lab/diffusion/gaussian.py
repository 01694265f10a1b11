"""The Gaussian diffusion of DDPM (Ho et al. 2020): every schedule quantity computed once, from the betas."""

import torch
import torch.nn.functional as F
from torch import nn


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] reshaped to broadcast over a batch of `ndim`-dimensional tensors."""
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    """Forward process q(x_t | x_0), posterior q(x_{t-1} | x_t, x_0) and the ε-prediction loss.

    Timesteps are 0-based: t = 0 is the first noising step, t = T-1 the last; β_t is `betas[t]`.
    The schedule is computed in float64 and stored as float32 buffers (not saved in checkpoints:
    they follow from the config).
    """

    def __init__(self, betas: torch.Tensor):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        self.num_timesteps = len(betas)
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t  (Ho et al. eq. 7); β̃_0 = 0.
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        quantities = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
            "posterior_variance": posterior_variance,
            # log β̃_0 = −inf, so the first entry borrows β̃_1 (as improved-diffusion does).
            "posterior_log_variance_clipped": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
            # μ̃_t = coef1 · x_0 + coef2 · x_t  (Ho et al. eq. 7).
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        }
        for name, value in quantities.items():
            self.register_buffer(name, value.float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε  (Ho et al. eq. 4)."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
        )

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)  (Ho et al. eqs. 6–7)."""
        mean = extract(self.posterior_mean_coef1, t, xt.ndim) * x0 + extract(self.posterior_mean_coef2, t, xt.ndim) * xt
        return (
            mean,
            extract(self.posterior_variance, t, xt.ndim),
            extract(self.posterior_log_variance_clipped, t, xt.ndim),
        )

    def predict_x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε) / sqrt(ᾱ_t), eq. 4 solved for x_0."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, xt.ndim) * xt
            - extract(self.sqrt_recipm1_alphas_cumprod, t, xt.ndim) * eps
        )

    def sample_timesteps(self, batch_size: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ Uniform{0, …, T−1}."""
        return torch.randint(0, self.num_timesteps, (batch_size,), device=device, generator=generator)

    def per_sample_loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """‖ε − ε_θ(x_t, t)‖² averaged over pixels, one value per sample (Ho et al. eq. 14, L_simple)."""
        eps_pred = model(self.q_sample(x0, t, noise), t)
        return F.mse_loss(eps_pred, noise, reduction="none").flatten(1).mean(1)

    def training_loss(self, model: nn.Module, x0: torch.Tensor) -> torch.Tensor:
        """L_simple with t uniform and fresh Gaussian noise."""
        t = self.sample_timesteps(x0.shape[0], x0.device)
        return self.per_sample_loss(model, x0, t, torch.randn_like(x0)).mean()
