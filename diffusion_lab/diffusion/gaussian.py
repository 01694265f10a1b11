"""The Gaussian diffusion of DDPM (Ho et al. 2020): every schedule quantity computed once, from the betas."""

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab import rules
from diffusion_lab.diffusion import parameterization


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] reshaped to broadcast over a batch of `ndim`-dimensional tensors."""
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    """Forward process q(x_t | x_0), posterior q(x_{t-1} | x_t, x_0) and the training loss.

    Timesteps are 0-based: t = 0 is the first noising step, t = T-1 the last; β_t is `betas[t]`.
    The schedule is computed in float64 and stored as float32 buffers (not saved in checkpoints:
    they follow from the config). `prediction` is what the network outputs (ε, x_0 or v; see
    `parameterization`), `loss_weighting` "none" (L_simple on that target) or "min_snr" (Min-SNR-γ).
    """

    def __init__(self, betas: torch.Tensor, prediction: str = "eps", loss_weighting: str = "none",
                 min_snr_gamma: float = 5.0):
        super().__init__()
        rules.PREDICTION.check("prediction", prediction)
        rules.LOSS_WEIGHTING.check("loss_weighting", loss_weighting)
        self.prediction, self.loss_weighting, self.min_snr_gamma = prediction, loss_weighting, min_snr_gamma
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
            "posterior_variance": posterior_variance,
            # log σ_t = ½·log((1 − ᾱ_t)/ᾱ_t): a float t between trained timesteps is linear in it (`alphas_cumprod_at`)
            "log_sigmas": 0.5 * torch.log((1 - alphas_cumprod) / alphas_cumprod),
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
        return parameterization.x0_from("eps", eps, xt, extract(self.alphas_cumprod, t, xt.ndim))

    def sample_timesteps(self, batch_size: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ Uniform{0, …, T−1}."""
        return torch.randint(0, self.num_timesteps, (batch_size,), device=device, generator=generator)

    def alphas_cumprod_at(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """ᾱ at integer timesteps, or at float ones between them with log σ linear in t (the inverse of
        diffusers' `_sigma_to_t`, which the samplers' step schedules in σ use), shaped for `ndim` dimensions."""
        if not t.is_floating_point():
            return extract(self.alphas_cumprod, t, ndim)
        last = self.num_timesteps - 1
        low = t.floor().clamp(0, max(last - 1, 0)).long()
        log_sigma = torch.lerp(self.log_sigmas[low], self.log_sigmas[(low + 1).clamp(max=last)],
                               (t - low).clamp(0, 1).to(self.log_sigmas.dtype))
        return torch.sigmoid(-2 * log_sigma).reshape(-1, *([1] * (ndim - 1)))  # 1/(1 + σ²)

    def eps_from_output(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε implied by the network's output at (x_t, t), whatever it predicts."""
        return parameterization.eps_from(self.prediction, output, xt, self.alphas_cumprod_at(t, xt.ndim))

    def per_sample_loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        """‖target − f_θ(x_t, t)‖² averaged over pixels, one value per sample, the target being ε (Ho et al.
        eq. 14, L_simple), x_0 or v, times the Min-SNR-γ weight if chosen. `labels` go to a class-conditional
        network."""
        xt = self.q_sample(x0, t, noise)
        output = model(xt, t) if labels is None else model(xt, t, labels)
        alpha_bar = extract(self.alphas_cumprod, t, x0.ndim)
        goal = parameterization.target(self.prediction, x0, noise, alpha_bar)
        loss = F.mse_loss(output, goal, reduction="none").flatten(1).mean(1)
        if self.loss_weighting == "min_snr":
            loss = loss * parameterization.min_snr_weight(self.prediction, alpha_bar, self.min_snr_gamma).flatten()
        return loss
