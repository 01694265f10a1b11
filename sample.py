"""Sample a trained run: `python sample.py ckpt=<run dir or .ckpt> sampler=ddim steps=50 n=64 seed=0`."""

from diffusion_lab.cli import sample_main

if __name__ == "__main__":
    sample_main()
