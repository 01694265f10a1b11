"""Sampling throughput of this project's DDIM against diffusers' DDIMPipeline, side by side in one process, at
the settings `sample.py` and `evaluate.py` pick for n images.

    python benchmarks/bench_sample.py [--model unet_small] [--n 1000] [--steps 50] [--rounds 3] [overrides ...]

Ours is the config's U-Net (with its speed settings: channels_last) under our DDIMSampler, at the batch size
and compile choice that `batch_size=auto compile=auto` give for n images × steps on this device
(`generation.prepare_sampling`); `--batch`/`--compile` set them. diffusers' is DDIMPipeline on UNet2DModel at
the config's width and depth, called with the same batch size. A second comparison, `ratio_same_network`,
drives diffusers' own UNet2DModel with our sampler, so that only the samplers differ. Each round times
`--batches` batches of each, interleaved; prints one JSON object: images/s of each (median over rounds), the
ratios, the compile time, and the end-to-end ratio for all n images with the compile time counted.
"""

import argparse
import json
import time

import torch
from diffusers import DDIMPipeline, DDIMScheduler
from hydra.utils import instantiate

from bench_train import diffusers_twin, project_config
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
from diffusion_lab.generation import prepare_sampling
from diffusion_lab.sampling import DDIMSampler
from timing import compare, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--n", type=int, default=1000, help="the images a user asks for (picks batch and compile)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, default=2, help="batches of each side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", default="auto")
    parser.add_argument("--compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the project's config")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = project_config(f"model={args.model}", *args.overrides)
    torch.manual_seed(0)
    module = instantiate(cfg.module).to(device).eval()
    compile_choice = {"true": True, "false": False}.get(args.compile, "auto")
    batch, compiled = prepare_sampling(module.net, args.n, args.n * args.steps, device, args.batch, compile_choice)
    unet = diffusers_twin(cfg.model).to(device).eval()
    shape = (batch, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    sampler = DDIMSampler(GaussianDiffusion(linear_betas(1000)).to(device), steps=args.steps)
    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000,
                                                               timestep_spacing="trailing"))
    pipeline.set_progress_bar_config(disable=True)

    def ours():  # Sampler.sample runs under torch.inference_mode
        sampler.sample(module.net, torch.randn(shape, device=device))

    def ours_on_their_network():
        sampler.sample(lambda x, t: unet(x, t).sample, torch.randn(shape, device=device))

    def theirs():  # the pipeline runs under torch.no_grad itself
        pipeline(batch_size=batch, num_inference_steps=args.steps, eta=0.0, output_type="np")

    start = time.perf_counter()
    ours()  # warm-up (and compilation, when chosen)
    first_call = time.perf_counter() - start
    ours_ips, theirs_ips = compare(ours, theirs, batch, args.batches, args.rounds)
    same_ips, theirs_again = compare(ours_on_their_network, theirs, batch, 1, args.rounds)
    compile_seconds = max(0.0, first_call - batch / ours_ips) if compiled else 0.0
    print(json.dumps({
        **machine(), "model": args.model, "device": device, "n": args.n, "steps": args.steps,
        "overrides": args.overrides, "speed": dict(cfg.speed), "batch": batch, "compiled": compiled,
        "parameters_ours": sum(p.numel() for p in module.net.parameters()),
        "parameters_diffusers": sum(p.numel() for p in unet.parameters()),
        "images_per_s_ours": round(ours_ips, 2), "images_per_s_diffusers": round(theirs_ips, 2),
        "ratio": round(ours_ips / theirs_ips, 3),
        "compile_seconds": round(compile_seconds, 1),
        "ratio_end_to_end_for_n": round((args.n / theirs_ips) / (args.n / ours_ips + compile_seconds), 3),
        "images_per_s_our_sampler_their_network": round(same_ips, 2),
        "ratio_same_network": round(same_ips / theirs_again, 3),
    }))


if __name__ == "__main__":
    main()
