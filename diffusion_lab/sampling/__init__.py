"""Reverse-process samplers sharing one contract (see `Sampler`)."""

from diffusion_lab.sampling.base import Sampler
from diffusion_lab.sampling.ddpm import DDPMSampler

__all__ = ["DDPMSampler", "Sampler"]
