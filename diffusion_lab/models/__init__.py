"""Denoising networks (torch only)."""

from diffusion_lab.models.unet import UNet

__all__ = ["UNet"]
