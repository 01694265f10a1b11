"""Reverse-process samplers sharing one contract (see `Sampler`), over step schedules of their own (`spacing`)."""

from diffusion_lab.sampling.base import Noise, Sampler
from diffusion_lab.sampling.ddim import DDIMSampler
from diffusion_lab.sampling.ddpm import DDPMSampler
from diffusion_lab.sampling.dpm_solver import DPMSolverSampler
from diffusion_lab.sampling.euler import EulerAncestralSampler, EulerSampler
from diffusion_lab.sampling.heun import HeunSampler
from diffusion_lab.sampling.spacing import NoiseLevels, noise_levels, spaced_timesteps
from diffusion_lab.sampling.unipc import UniPCSampler

__all__ = ["DDIMSampler", "DDPMSampler", "DPMSolverSampler", "EulerAncestralSampler", "EulerSampler", "HeunSampler",
           "Noise", "NoiseLevels", "Sampler", "UniPCSampler", "noise_levels", "spaced_timesteps"]
