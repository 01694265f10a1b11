"""Reverse-process samplers sharing one contract (see `Sampler`)."""

from diffusion_lab.sampling.base import Noise, Sampler
from diffusion_lab.sampling.ddim import DDIMSampler
from diffusion_lab.sampling.ddpm import DDPMSampler
from diffusion_lab.sampling.dpm_solver import DPMSolverSampler
from diffusion_lab.sampling.spacing import spaced_timesteps

__all__ = ["DDIMSampler", "DDPMSampler", "DPMSolverSampler", "Noise", "Sampler", "spaced_timesteps"]
