"""Sampling throughput of this project's DDIM-50 against diffusers' DDIMPipeline, on the same network (the
diffusers twin of a config's U-Net, so that only the samplers differ), side by side in one process.

    python benchmarks/bench_sample.py [--model unet_small] [--n 64] [--steps 50] [--rounds 3]

Prints one JSON object: images/s of each (median over interleaved rounds) and the ratio ours / diffusers.
"""

import argparse
import json
import statistics
import time

import torch
from diffusers import DDIMPipeline, DDIMScheduler
from hydra import compose, initialize_config_dir

from bench_train import diffusers_twin
from diffusion_lab.config import CONFIG_DIR
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
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={args.model}"])
    torch.manual_seed(0)
    unet = diffusers_twin(cfg.model).to(device).eval()
    shape = (args.n, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    sampler = DDIMSampler(GaussianDiffusion(linear_betas(1000)).to(device), steps=args.steps)
    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000,
                                                               timestep_spacing="trailing"))
    pipeline.set_progress_bar_config(disable=True)

    @torch.inference_mode()
    def ours():
        sampler.sample(lambda x, t: unet(x, t).sample, torch.randn(shape, device=device))

    def theirs():  # the pipeline runs under torch.no_grad itself
        pipeline(batch_size=args.n, num_inference_steps=args.steps, eta=0.0, output_type="np")

    def images_per_second(fn) -> float:
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return args.n / (time.perf_counter() - start)

    rounds = {"ours": [], "diffusers": []}
    for _ in range(args.rounds):  # interleaved, so that drifts of a noisy machine hit both alike
        rounds["ours"].append(images_per_second(ours))
        rounds["diffusers"].append(images_per_second(theirs))
    ours_ips, theirs_ips = statistics.median(rounds["ours"]), statistics.median(rounds["diffusers"])
    print(json.dumps({
        "model": args.model, "device": device, "threads": torch.get_num_threads(), "n": args.n,
        "steps": args.steps, "images_per_s_ours": round(ours_ips, 2), "images_per_s_diffusers": round(theirs_ips, 2),
        "ratio": round(ours_ips / theirs_ips, 3),
    }))


if __name__ == "__main__":
    main()
