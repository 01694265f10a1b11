"""The sampler contract: a sampler lists the timesteps it visits and maps x_t to the next, less noisy x."""

from abc import ABC, abstractmethod

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.diffusion.parameterization import x0_from
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling.spacing import spaced_timesteps


Noise = torch.Generator | ImageNoise | None  # where a stochastic step's z comes from


class Sampler(ABC):
    """One reverse-process algorithm over `steps` of the T training timesteps (all of them by default).

    `timesteps[i]` is the model's t at step i, noisiest first; `alphas_cumprod[i]` is ᾱ there and
    `alphas_cumprod_prev[i]` is ᾱ at the step's target: the next listed timestep, or 1 (x_0) after the last.
    Per-step coefficients are Python floats, computed once in float64, so a sampler works on any device.
    """

    name: str  # the option of conf/sampler/ that builds it

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, spacing: str = "trailing",
                 clip_denoised: bool = False):
        T = diffusion.num_timesteps
        self.timesteps = spaced_timesteps(T, steps or T, spacing)
        alphas_cumprod = torch.cumprod(1 - diffusion.betas.double().cpu(), 0)
        self.alphas_cumprod = [float(alphas_cumprod[t]) for t in self.timesteps]
        self.alphas_cumprod_prev = self.alphas_cumprod[1:] + [1.0]
        self.clip_denoised = clip_denoised

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def network_evaluations(self) -> int:
        """Network calls per image of one chain: one per step (a second-order solver overrides it)."""
        return self.num_steps

    def predict_x0(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε)/sqrt(ᾱ_t), clipped to [−1, 1] if `clip_denoised`."""
        x0 = x0_from("eps", eps, x, self.alphas_cumprod[i])
        return x0.clamp(-1, 1) if self.clip_denoised else x0

    def reset(self) -> None:
        """Forget state carried between steps (multistep solvers); called before every chain."""

    @abstractmethod
    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, generator: Noise) -> torch.Tensor:
        """The next x, given x at `timesteps[i]` and the model's ε prediction there."""

    @torch.inference_mode()
    def sample(self, model: nn.Module, noise: torch.Tensor, generator: Noise = None,
               progress: bool = False, callback=None) -> torch.Tensor:
        """Run the chain from `noise` (x at timesteps[0]) to x_0 (unclipped); `callback(i, x)` sees each new x."""
        self.reset()
        x = noise
        for i, t in enumerate(tqdm(self.timesteps, disable=not progress, desc=type(self).__name__, leave=False)):
            eps = model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
            x = self.step(eps, i, x, generator)
            if callback is not None:
                callback(i, x)
        return x

    @staticmethod
    def noise_like(x: torch.Tensor, generator: Noise) -> torch.Tensor:
        """z ~ N(0, I) of x's shape: from the generator, or each image's own stream (`ImageNoise`)."""
        if isinstance(generator, ImageNoise):
            return generator.randn(x.shape[1:], x.dtype)
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
