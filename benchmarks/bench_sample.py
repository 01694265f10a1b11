"""Sampling throughput of this project's DDIM-50 against diffusers' DDIMPipeline, side by side in one process.

    python benchmarks/bench_sample.py [--model unet_small] [--n 64] [--steps 50] [--rounds 3] [overrides ...]

Two comparisons, each against DDIMPipeline on UNet2DModel at the config's width and depth:
- `ratio`: our whole stack, the config's U-Net (with the config's speed settings: channels_last, compile)
  under our DDIMSampler;
- `ratio_same_network`: our DDIMSampler driving diffusers' own UNet2DModel, so that only the samplers differ.
Prints one JSON object: images/s of each (median over interleaved rounds) and the ratios.
"""

import argparse
import json

import torch
from diffusers import DDIMPipeline, DDIMScheduler
from hydra.utils import instantiate

from bench_train import diffusers_twin, project_config
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
from diffusion_lab.sampling import DDIMSampler
from timing import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the project's config")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = project_config(f"model={args.model}", *args.overrides)
    torch.manual_seed(0)
    module = instantiate(cfg.module).to(device).eval()
    if cfg.speed.compile:
        module.net.compile()
    unet = diffusers_twin(cfg.model).to(device).eval()
    shape = (args.n, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    sampler = DDIMSampler(GaussianDiffusion(linear_betas(1000)).to(device), steps=args.steps)
    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000,
                                                               timestep_spacing="trailing"))
    pipeline.set_progress_bar_config(disable=True)

    def ours():  # Sampler.sample runs under torch.inference_mode
        sampler.sample(module.net, torch.randn(shape, device=device))

    def ours_on_their_network():
        sampler.sample(lambda x, t: unet(x, t).sample, torch.randn(shape, device=device))

    def theirs():  # the pipeline runs under torch.no_grad itself
        pipeline(batch_size=args.n, num_inference_steps=args.steps, eta=0.0, output_type="np")

    ours()  # warm-up (and compilation, when enabled)
    ours_ips, theirs_ips = compare(ours, theirs, args.n, 1, args.rounds)
    same_ips, theirs_again = compare(ours_on_their_network, theirs, args.n, 1, args.rounds)
    print(json.dumps({
        "model": args.model, "device": device, "threads": torch.get_num_threads(), "n": args.n, "steps": args.steps,
        "overrides": args.overrides, "speed": dict(cfg.speed),
        "parameters_ours": sum(p.numel() for p in module.net.parameters()),
        "parameters_diffusers": sum(p.numel() for p in unet.parameters()),
        "images_per_s_ours": round(ours_ips, 2), "images_per_s_diffusers": round(theirs_ips, 2),
        "ratio": round(ours_ips / theirs_ips, 3),
        "images_per_s_our_sampler_their_network": round(same_ips, 2),
        "ratio_same_network": round(same_ips / theirs_again, 3),
    }))


if __name__ == "__main__":
    main()
