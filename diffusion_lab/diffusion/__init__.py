"""The mathematics of DDPM: noise schedules and the Gaussian diffusion (torch only)."""

from diffusion_lab.diffusion.gaussian import GaussianDiffusion
from diffusion_lab.diffusion.denoiser import Denoiser
from diffusion_lab.diffusion.schedules import cosine_betas, linear_betas, sigmoid_betas

__all__ = ["Denoiser", "GaussianDiffusion", "cosine_betas", "linear_betas", "sigmoid_betas"]
