"""diffusion-lab: config-driven DDPM experiments on MNIST and Fashion-MNIST."""

__version__ = "0.1.0"
