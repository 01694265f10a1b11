"""Train a DDPM: `python train.py schedule=cosine T=1000` (any Hydra override; see conf/)."""

from diffusion_lab.cli import train_main

if __name__ == "__main__":
    train_main()
