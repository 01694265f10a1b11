"""Evaluate a trained run: `python evaluate.py ckpt=<run> samplers=[ddpm,ddim,dpm_solver] steps=[50,100,200] n=10000`."""

from diffusion_lab.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
