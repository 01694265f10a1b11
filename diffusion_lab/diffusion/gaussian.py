"""The Gaussian diffusion of DDPM (Ho et al. 2020): every schedule quantity computed once, from the betas."""

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab import rules
from diffusion_lab.diffusion import parameterization
from diffusion_lab.diffusion.likelihood import discretized_gaussian_log_likelihood, normal_kl, to_bits_per_dim
from diffusion_lab.errors import ConfigError


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] reshaped to broadcast over a batch of `ndim`-dimensional tensors."""
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    """Forward process q(x_t | x_0), posterior q(x_{t-1} | x_t, x_0), the reverse p_θ(x_{t-1} | x_t), the
    variational bound and the training loss.

    Timesteps are 0-based: t = 0 is the first noising step, t = T-1 the last; β_t is `betas[t]`.
    The schedule is computed in float64 and stored as float32 buffers (not saved in checkpoints:
    they follow from the config). `prediction` is what the network outputs (ε, x_0 or v; see
    `parameterization`), `loss_weighting` "none" (L_simple on that target) or "min_snr" (Min-SNR-γ).

    With `learn_sigma` the network outputs a second half of channels, r, and the reverse variance is
    Σ_θ = exp(v·log β_t + (1 − v)·log β̃_t) with v = (r + 1)/2 (Nichol & Dhariwal 2021, eq. 15; r = 0, a fresh
    zero-initialised head, is their geometric mean). `loss` is L_simple, L_hybrid = L_simple + λ·L_vlb with
    the mean's gradient stopped in L_vlb (their §3.1, λ = `vlb_weight`), or L_vlb alone (`vlb`).
    """

    def __init__(self, betas: torch.Tensor, prediction: str = "eps", loss_weighting: str = "none",
                 min_snr_gamma: float = 5.0, learn_sigma: bool = False, loss: str = "simple",
                 vlb_weight: float = 0.001):
        super().__init__()
        rules.PREDICTION.check("prediction", prediction)
        rules.LOSS_WEIGHTING.check("loss_weighting", loss_weighting)
        rules.BOOLEAN.check("model.learn_sigma", learn_sigma)
        rules.LOSS.check("loss", loss)
        rules.VLB_WEIGHT.check("module.diffusion.vlb_weight", vlb_weight)
        rules.check_loss(learn_sigma, loss, loss_weighting)
        self.prediction, self.loss_weighting, self.min_snr_gamma = prediction, loss_weighting, min_snr_gamma
        self.learn_sigma, self.loss, self.vlb_weight = learn_sigma, loss, vlb_weight
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
            # σ² = β's log, its first entry β̃_1 as well (improved-diffusion's fixed_large): the decoder's variance
            "log_betas_clipped": torch.log(torch.cat([posterior_variance[1:2], betas[1:]])),
            "log_betas": torch.log(betas),
            # μ̃_t = coef1 · x_0 + coef2 · x_t  (Ho et al. eq. 7).
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        }
        for name, value in quantities.items():
            self.register_buffer(name, value.float(), persistent=False)
        # The network's t at each of these timesteps: itself, but for a chain `respaced` from a longer one.
        self.register_buffer("timestep_map", torch.arange(self.num_timesteps), persistent=False)

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

    def split_output(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the network predicts, its variance output r or None) from its raw output."""
        return output.chunk(2, dim=1) if self.learn_sigma else (output, None)

    def p_log_variance(self, t: torch.Tensor, variance_output: torch.Tensor | None, ndim: int,
                       variance: str = "fixed_small") -> torch.Tensor:
        """log σ² of p_θ(x_{t-1} | x_t): learned, v·log β_t + (1 − v)·log β̃_t with v = (r + 1)/2 (eq. 15), when the
        network outputs r; else fixed, β̃_t (`fixed_small`) or β_t (`fixed_large`), where t = 0 borrows β̃_1."""
        if variance_output is not None:
            v = (variance_output + 1) / 2
            return v * extract(self.log_betas, t, ndim) + (1 - v) * extract(self.posterior_log_variance_clipped, t, ndim)
        return extract(self.posterior_log_variance_clipped if variance == "fixed_small" else self.log_betas_clipped,
                       t, ndim)

    def p_mean_variance(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False,
                        variance: str = "fixed_small") -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of p_θ(x_{t-1} | x_t): the posterior mean μ̃_t(x_t, x̂_0) at the network's x̂_0
        (clipped to [−1, 1] if asked) and `p_log_variance`."""
        predicted, variance_output = self.split_output(output)
        x0 = parameterization.x0_from(self.prediction, predicted, xt, self.alphas_cumprod_at(t, xt.ndim))
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return mean, self.p_log_variance(t, variance_output, xt.ndim, variance)

    def vlb_terms(self, output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                  clip_denoised: bool = False, variance: str = "fixed_small") -> torch.Tensor:
        """L_t of each image in bits per dimension (Ho et al. eq. 5): KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t))
        for t > 0, and for t = 0 the decoder's −log p_θ(x_0 | x_1) of the 8-bit x_0, a Gaussian over its bins."""
        mean, log_variance = self.p_mean_variance(output, xt, t, clip_denoised, variance)
        true_mean, _, true_log_variance = self.q_posterior(x0, xt, t)
        kl = to_bits_per_dim(normal_kl(true_mean, true_log_variance, mean, log_variance))
        decoder = to_bits_per_dim(-discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance))
        return torch.where(t == 0, decoder.to(kl.dtype), kl)

    def prior_bits_per_dim(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T of each image: KL(q(x_T | x_0) ‖ N(0, I)) in bits per dimension, no parameters in it."""
        last = torch.full((len(x0),), self.num_timesteps - 1, device=x0.device, dtype=torch.long)
        alpha_bar = extract(self.alphas_cumprod, last, x0.ndim)
        zero = torch.zeros_like(x0)
        return to_bits_per_dim(normal_kl(alpha_bar.sqrt() * x0, torch.log1p(-alpha_bar).expand_as(x0), zero, zero))

    def per_sample_loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of each sample at x_t = q_sample(x0, t, noise). L_simple: ‖target − f_θ(x_t, t)‖²
        averaged over pixels, the target being ε (Ho et al. eq. 14), x_0 or v, times the Min-SNR-γ weight if
        chosen. L_hybrid adds λ·T·L_t (an unbiased estimate of λ·L_vlb = λ·Σ_t L_t under uniform t) with the
        mean detached, so L_vlb trains only the variances (Nichol & Dhariwal §3.1); `vlb` is L_t alone, in bits
        per dimension. `labels` go to a class-conditional network."""
        xt = self.q_sample(x0, t, noise)
        output = model(xt, t) if labels is None else model(xt, t, labels)
        predicted, variance_output = self.split_output(output)
        if self.loss == "vlb":
            return self.vlb_terms(output, x0, xt, t)
        alpha_bar = extract(self.alphas_cumprod, t, x0.ndim)
        goal = parameterization.target(self.prediction, x0, noise, alpha_bar)
        loss = F.mse_loss(predicted, goal, reduction="none").flatten(1).mean(1)
        if self.loss_weighting == "min_snr":
            loss = loss * parameterization.min_snr_weight(self.prediction, alpha_bar, self.min_snr_gamma).flatten()
        if self.loss == "hybrid":
            frozen = torch.cat([predicted.detach(), variance_output], dim=1)
            loss = loss + self.vlb_weight * self.num_timesteps * self.vlb_terms(frozen, x0, xt, t)
        return loss

    def respaced(self, timesteps: list[int]) -> "GaussianDiffusion":
        """The Markov chain over the visited `timesteps` alone (Nichol & Dhariwal §4): β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}
        over τ in ascending order, so that its ᾱ are the original ones at τ. Its network is still called at the
        original τ_i (`timestep_map`), and learned variances interpolate its own β' and β̃'."""
        taus = sorted(timesteps)
        alpha_bar = torch.cumprod(1 - self.betas.double().cpu(), 0)[taus]
        betas = 1 - alpha_bar / torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        chain = GaussianDiffusion(betas, self.prediction, self.loss_weighting, self.min_snr_gamma, self.learn_sigma,
                                  self.loss, self.vlb_weight).to(self.alphas_cumprod.device)
        chain.timestep_map = torch.tensor(taus, device=self.alphas_cumprod.device)
        return chain
