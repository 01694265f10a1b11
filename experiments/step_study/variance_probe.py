"""The noise that respaced DDPM adds at the last noisy steps of a chain, per reverse variance: β̃' (the posterior's,
fixed_small), the model's own learned σ (Nichol & Dhariwal 2021, eq. 15) and β' (fixed_large).

    python experiments/step_study/variance_probe.py [--model mnist_learned] [--nfe 10 20 50] [--n 64] [--last 3]

The chains start from the comparison's first n seeds (image i from the noise (seed 0, i)) on the comparison's DDPM
step schedule (the headline pilot's best). The learned σ is averaged over images and pixels at each step. Noise
added at the last noisy step is never removed again: a σ above β̃' there stays in the sample as grain.
"""

import argparse
import math
from pathlib import Path

import torch

from diffusion_lab.checkpoints import load_run
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling import DDPMSampler
from summarize import best_spacing

HERE = Path(__file__).resolve().parent


class RecordingDDPM(DDPMSampler):
    """Respaced DDPM with the model's learned variance that keeps the mean learned σ of every noisy step."""

    def reset(self) -> None:
        self.mean_learned_std = {}

    def step(self, eps, i, x, generator=None, variance_output=None):
        if self.noise_stds[i]:
            self.mean_learned_std[i] = self.learned_std(i, variance_output).mean().item()
        return super().step(eps, i, x, generator, variance_output)


def probe(model: str, nfe: int, n: int, last: int) -> list[dict]:
    """The last `last` noisy steps of `model`'s respaced DDPM at `nfe` steps: t, √β̃', the learned σ, √β'."""
    module, run_cfg, _ = load_run(HERE / "models" / model)
    spacing = best_spacing(HERE / "results" / f"{run_cfg.dataset.name}_linear" / "pilot" / "eval.json", "ddpm")
    sampler = RecordingDDPM(module.diffusion, steps=nfe, spacing=spacing, variance="learned")
    noise = ImageNoise(0, range(n))
    sampler.sample(module.denoiser(), noise.randn(module.image_shape), noise)
    rows = []
    for i in sorted(sampler.mean_learned_std)[-last:]:
        log_beta, log_posterior_variance = sampler.log_variance_bounds[i]  # the sampler's own β' and β̃'
        rows.append({"nfe": nfe, "spacing": spacing, "t": sampler.timesteps[i],
                     "fixed_small": math.exp(0.5 * log_posterior_variance), "learned": sampler.mean_learned_std[i],
                     "fixed_large": math.exp(0.5 * log_beta)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_learned",
                        choices=sorted(p.name for p in (HERE / "models").iterdir()))
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--n", type=int, default=64, help="chains (the comparison's first seeds)")
    parser.add_argument("--last", type=int, default=3, help="noisy steps shown, counted back from the last")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"{args.model}: σ added at the last noisy steps of respaced DDPM (learned: mean over {args.n} chains)\n")
    print("| NFE | spacing | t | √β̃' (fixed_small) | learned σ | √β' (fixed_large) | learned / √β̃' |")
    print("|---|---|---|---|---|---|---|")
    for nfe in args.nfe:
        for r in probe(args.model, nfe, args.n, args.last):
            print(f"| {r['nfe']} | {r['spacing']} | {r['t']} | {r['fixed_small']:.4f} | {r['learned']:.4f} | "
                  f"{r['fixed_large']:.4f} | {r['learned'] / r['fixed_small']:.2f} |")


if __name__ == "__main__":
    main()
