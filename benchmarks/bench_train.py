"""Training throughput against the loop users would otherwise copy: diffusers' UNet2DModel + DDPMScheduler
(its train_unconditional example), at matched U-Net width and depth, side by side in one process.

    python benchmarks/bench_train.py [--model unet_small] [--batch 128] [--steps 10] [--rounds 3]

Prints one JSON object: parameters of each network, images/s of each training step (forward, ε-MSE,
backward, AdamW) as the median over interleaved rounds, and the ratio ours / diffusers.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffusion_lab.config import CONFIG_DIR
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas


def diffusers_twin(cfg) -> UNet2DModel:
    """A UNet2DModel with our config's widths per level, residual blocks per level, attention levels and
    GroupNorm groups."""
    size = cfg.image_size
    widths, attention = [], []
    for level, mult in enumerate(cfg.channel_mults):
        widths.append(cfg.channels * mult)
        attention.append(size // 2 ** level in cfg.attention_resolutions)
    return UNet2DModel(
        sample_size=size, in_channels=cfg.in_channels, out_channels=cfg.in_channels, block_out_channels=widths,
        layers_per_block=cfg.num_res_blocks, norm_num_groups=cfg.norm_groups,
        down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
    )


def images_per_second(step, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def model_config(name: str):
    """conf/model/<name>.yaml, resolved for the default data set."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[f"model={name}"]).model


def compare(ours, theirs, batch: int, steps: int, rounds: int) -> tuple[float, float]:
    """Median images/s of `ours` and `theirs` over `rounds` interleaved rounds of `steps` calls each, so that
    drifts of a noisy machine hit both alike."""
    measured = [(images_per_second(ours, batch, steps), images_per_second(theirs, batch, steps))
                for _ in range(rounds)]
    return statistics.median(m[0] for m in measured), statistics.median(m[1] for m in measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = model_config(args.model)
    torch.manual_seed(0)
    ours = instantiate(cfg).to(device)
    theirs = diffusers_twin(cfg).to(device)
    diffusion = GaussianDiffusion(linear_betas(1000)).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    x0 = torch.randn(args.batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=2e-4)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=2e-4)

    def our_step():
        loss = diffusion.training_loss(ours, x0)
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()

    def their_step():  # diffusers' examples/unconditional_image_generation/train_unconditional.py
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), device=device)
        loss = F.mse_loss(theirs(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        opt_theirs.step()

    our_step(), their_step()  # warm-up
    ours_ips, theirs_ips = compare(our_step, their_step, args.batch, args.steps, args.rounds)
    print(json.dumps({
        "model": args.model, "device": device, "threads": torch.get_num_threads(), "batch": args.batch,
        "parameters_ours": sum(p.numel() for p in ours.parameters()),
        "parameters_diffusers": sum(p.numel() for p in theirs.parameters()),
        "train_images_per_s_ours": round(ours_ips, 1), "train_images_per_s_diffusers": round(theirs_ips, 1),
        "ratio": round(ours_ips / theirs_ips, 3),
    }))


if __name__ == "__main__":
    main()
