"""Sampling throughput of this project's DDIM-50 against diffusers' DDIMPipeline, on the same network (the
diffusers twin of a config's U-Net, so that only the samplers differ), side by side in one process.

    python benchmarks/bench_sample.py [--model unet_small] [--n 64] [--steps 50] [--rounds 3]

Prints one JSON object: images/s of each (median over interleaved rounds) and the ratio ours / diffusers.
"""

import argparse
import json

import torch
from diffusers import DDIMPipeline, DDIMScheduler

from bench_train import compare, diffusers_twin, model_config
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
from diffusion_lab.sampling import DDIMSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = model_config(args.model)
    torch.manual_seed(0)
    unet = diffusers_twin(cfg).to(device).eval()
    shape = (args.n, cfg.in_channels, cfg.image_size, cfg.image_size)
    sampler = DDIMSampler(GaussianDiffusion(linear_betas(1000)).to(device), steps=args.steps)
    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000,
                                                               timestep_spacing="trailing"))
    pipeline.set_progress_bar_config(disable=True)

    @torch.inference_mode()
    def ours():
        sampler.sample(lambda x, t: unet(x, t).sample, torch.randn(shape, device=device))

    def theirs():  # the pipeline runs under torch.no_grad itself
        pipeline(batch_size=args.n, num_inference_steps=args.steps, eta=0.0, output_type="np")

    ours_ips, theirs_ips = compare(ours, theirs, args.n, 1, args.rounds)
    print(json.dumps({
        "model": args.model, "device": device, "threads": torch.get_num_threads(), "n": args.n,
        "steps": args.steps, "images_per_s_ours": round(ours_ips, 2), "images_per_s_diffusers": round(theirs_ips, 2),
        "ratio": round(ours_ips / theirs_ips, 3),
    }))


if __name__ == "__main__":
    main()
