"""The sampler contract: a sampler lists the timesteps it visits and maps x_t to the next, less noisy x."""

from abc import ABC, abstractmethod

import torch
from torch import nn

from diffusion_lab.diffusion import GaussianDiffusion


class Sampler(ABC):
    """One reverse-process algorithm over a fixed list of model timesteps, noisiest first.

    Subclasses set `timesteps`: the model's t indices visited, from T−1 (pure noise) down to 0.
    """

    timesteps: list[int]

    def __init__(self, diffusion: GaussianDiffusion):
        self.diffusion = diffusion

    @abstractmethod
    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The next x, given x at `timesteps[i]` and the model's ε prediction there."""

    @torch.inference_mode()
    def sample(
        self, model: nn.Module, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Run the whole chain from `noise` (x at timesteps[0]) to an image in [-1, 1] (unclipped)."""
        x = noise
        for i, t in enumerate(self.timesteps):
            eps = model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
            x = self.step(eps, i, x, generator)
        return x
