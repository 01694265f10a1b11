"""The sampler contract: a sampler lists the network evaluations of its chain and maps x at one to x at the next."""

from abc import ABC, abstractmethod

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_lab import rules
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.diffusion.parameterization import x0_from
from diffusion_lab.errors import ConfigError
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling.spacing import SigmaToTimestep, alpha_bar_of, noise_levels

Noise = torch.Generator | ImageNoise | None  # where a stochastic step's z comes from


class Sampler(ABC):
    """One reverse-process algorithm over `steps` noise levels of a step schedule (`spacing`, see `spacing`).

    `timesteps[i]` is the network's t at evaluation i, noisiest first, and `alphas_cumprod[i]` is ᾱ of x there;
    `sigmas` are the chain's K + 1 levels (σ = sqrt((1 − ᾱ)/ᾱ); the last is 0 unless the schedule ends on σ_min)
    and `alphas_cumprod_prev[i]` is ᾱ at step i's target. One evaluation per step unless a solver says otherwise
    (Heun). Per-step coefficients are Python floats, computed once in float64, so a sampler works on any device.

    Every x̂_0 a solver forms goes through `predict_x0`: clipped to [−1, 1] (`clip_denoised`) or dynamically
    thresholded at the `dynamic_threshold` percentile of each image's |x̂_0| (Saharia et al. 2022, §2.3).
    """

    name: str  # the option of conf/sampler/ that builds it
    learned_variance = False  # True: `step` takes the network's variance output too (`Denoiser.outputs`)

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, spacing: str = "trailing",
                 clip_denoised: bool = False, dynamic_threshold: float | None = None):
        rules.PERCENTILE.check("sampler.dynamic_threshold", dynamic_threshold)
        if clip_denoised and dynamic_threshold is not None:
            raise ConfigError(f"sampler.dynamic_threshold={dynamic_threshold}: allowed only with "
                              "sampler.clip_denoised=false (choose one way of bounding x̂_0)")
        schedule = torch.cumprod(1 - diffusion.betas.double().cpu(), 0).numpy()
        levels = noise_levels(schedule, diffusion.num_timesteps if steps is None else steps, spacing)
        self.spacing, self.sigmas, self.timesteps = spacing, levels.sigmas, levels.timesteps
        self.num_steps = len(levels.timesteps)
        alphas_cumprod = [alpha_bar_of(s) for s in self.sigmas]
        self.alphas_cumprod, self.alphas_cumprod_prev = alphas_cumprod[:-1], alphas_cumprod[1:]
        self.timestep_of = SigmaToTimestep(schedule)
        self.clip_denoised, self.dynamic_threshold = clip_denoised, dynamic_threshold

    @property
    def variant(self) -> str:
        """The option of conf/sampler/ this sampler's solver settings are (a preset such as dpm_solver_3m)."""
        return self.name

    @property
    def label(self) -> str:
        """How results name it: the variant, with its step schedule unless that is the default (trailing)."""
        return self.variant if self.spacing == "trailing" else f"{self.variant}+{self.spacing}"

    @property
    def network_evaluations(self) -> int:
        """Network calls per image of one chain."""
        return len(self.timesteps)

    def predict_x0(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε)/sqrt(ᾱ_t) at evaluation i, bounded as configured."""
        x0 = x0_from("eps", eps, x, self.alphas_cumprod[i])
        if self.clip_denoised:
            return x0.clamp(-1, 1)
        if self.dynamic_threshold is not None:  # s = max(p-th percentile of |x̂_0|, 1); x̂_0 ← clip(x̂_0, −s, s)/s
            s = torch.quantile(x0.flatten(1).abs().float(), self.dynamic_threshold, dim=1).clamp(min=1)
            s = s.to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
            return torch.maximum(torch.minimum(x0, s), -s) / s
        return x0

    @property
    def bounds_x0(self) -> bool:
        return self.clip_denoised or self.dynamic_threshold is not None

    def reset(self) -> None:
        """Forget state carried between steps (multistep solvers); called before every chain."""

    @abstractmethod
    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, generator: Noise) -> torch.Tensor:
        """x at evaluation i + 1 (x_0 after the last), given x at evaluation i and the model's ε there."""

    @torch.inference_mode()
    def sample(self, model: nn.Module, noise: torch.Tensor, generator: Noise = None,
               progress: bool = False, callback=None) -> torch.Tensor:
        """Run the chain from `noise` (x at timesteps[0]) to x_0 (unclipped); `callback(i, x)` sees each new x."""
        self.reset()
        x = noise
        for i in tqdm(range(len(self.timesteps)), disable=not progress, desc=type(self).__name__, leave=False):
            x = self.advance(model, i, x, generator)
            if callback is not None:
                callback(i, x)
        return x

    def advance(self, model: nn.Module, i: int, x: torch.Tensor, generator: Noise = None) -> torch.Tensor:
        """x at evaluation i + 1 from x at evaluation i: the model at timesteps[i] (with its variance output where
        this sampler uses it), then `step`."""
        t = self.timesteps[i]
        dtype = torch.long if isinstance(t, int) else x.dtype  # between trained timesteps: a float t
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=dtype)
        if self.learned_variance:
            eps, variance_output = model.outputs(x, t_batch)
            return self.step(eps, i, x, generator, variance_output)
        return self.step(model(x, t_batch), i, x, generator)

    @staticmethod
    def noise_like(x: torch.Tensor, generator: Noise) -> torch.Tensor:
        """z ~ N(0, I) of x's shape: from the generator, or each image's own stream (`ImageNoise`)."""
        if isinstance(generator, ImageNoise):
            return generator.randn(x.shape[1:], x.dtype)
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
