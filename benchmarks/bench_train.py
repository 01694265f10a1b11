"""Training throughput against the loop users would otherwise copy: diffusers' UNet2DModel + DDPMScheduler
(its train_unconditional example), at matched U-Net width and depth, side by side in one process.

    python benchmarks/bench_train.py [--model unet_small] [--batch 128] [--steps 5] [--rounds 3] [overrides ...]

Each side runs its whole loop on real MNIST (paths.data_dir, e.g. $DIFFUSION_LAB_DATA): ours is the data
module's batches and the LightningModule's training_step with the config's speed settings, fused AdamW,
gradient clipping and the EMA update; diffusers' is torchvision's MNIST with per-image ToTensor/Normalize in
a DataLoader (the example's defaults: no workers, no EMA), noise, `add_noise`, ε-MSE, AdamW, clipping and
its LR scheduler. Overrides are Hydra's (`speed.channels_last=false optimizer.fused=false`), to measure what
each setting buys. Prints one JSON object: parameters and GFLOP per image of each side (torch's flop
counter), images/s of each loop (median over interleaved rounds), the ratio ours / diffusers, and the
GFLOP/s each achieves.
"""

import argparse
import json

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms
from torchvision.datasets import MNIST

import diffusion_lab.resolvers  # noqa: F401  (registers the resolvers conf/ uses)
from diffusion_lab.callbacks.ema import ema_weight
from diffusion_lab.config import CONFIG_DIR
from timing import compare, machine


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


def project_config(*overrides: str):
    """conf/config.yaml composed with `overrides`, as train.py would see it (Hydra's own keys aside)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def flops_per_step(step) -> float:
    """Floating-point operations of one call (forward, backward and optimizer), counted by torch."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def endless(loader):
    while True:
        yield from loader


def our_loop(cfg, device: str):
    """One training step of this project, as the Trainer runs it (the trainer's own bookkeeping aside)."""
    module = instantiate(cfg.module).to(device)
    if cfg.speed.compile:
        module.net.compile()
    optimizer = instantiate(cfg.optimizer)(params=module.parameters())
    average = [p.detach().clone() for p in module.parameters()]
    data = instantiate(cfg.dataset)
    data.setup("fit")
    batches, step_count = endless(data.train_dataloader()), [0]

    bf16 = str(cfg.trainer.precision).startswith("bf16")  # trainer=gpu: bf16-mixed, as the Trainer's autocast

    def step():
        k = step_count[0]
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(data.transfer_batch_to_device(next(batches), torch.device(device), 0), k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        torch._foreach_lerp_(average, [p.detach() for p in module.parameters()], ema_weight(k, 0.999))
        step_count[0] += 1

    return module.net, step


def diffusers_loop(cfg, device: str, batch: int):
    """diffusers' examples/unconditional_image_generation/train_unconditional.py, on MNIST at its defaults."""
    unet = diffusers_twin(cfg.model).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=cfg.T)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.optimizer.lr, weight_decay=1e-6)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=500, num_training_steps=10**6)
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    dataset = MNIST(cfg.paths.data_dir, train=True, transform=to_tensor)
    batches = endless(DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0))

    def step():
        diffusers_step(unet, scheduler, optimizer, lr_scheduler, next(batches)[0].to(device))

    return unet, step


def diffusers_step(unet, scheduler, optimizer, lr_scheduler, clean: torch.Tensor) -> torch.Tensor:
    """One step of the example's loop on a batch in [-1, 1]: noise, `add_noise`, ε-MSE, AdamW, clipping at 1."""
    noise = torch.randn_like(clean)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), device=clean.device)
    loss = F.mse_loss(unet(scheduler.add_noise(clean, noise, t), t).sample, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    lr_scheduler.step()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the project's config")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = project_config(f"model={args.model}", f"dataset.batch_size={args.batch}", *args.overrides)
    torch.manual_seed(0)
    ours, our_step = our_loop(cfg, device)
    theirs, their_step = diffusers_loop(cfg, device, args.batch)
    our_step(), their_step()  # warm-up (and compilation, when enabled)
    our_flops, their_flops = flops_per_step(our_step), flops_per_step(their_step)
    ours_ips, theirs_ips = compare(our_step, their_step, args.batch, args.steps, args.rounds)
    print(json.dumps({
        **machine(), "model": args.model, "device": device, "batch": args.batch, "precision": cfg.trainer.precision,
        "overrides": args.overrides, "speed": dict(cfg.speed), "fused_adamw": cfg.optimizer.fused,
        "parameters_ours": sum(p.numel() for p in ours.parameters()),
        "parameters_diffusers": sum(p.numel() for p in theirs.parameters()),
        "train_images_per_s_ours": round(ours_ips, 1), "train_images_per_s_diffusers": round(theirs_ips, 1),
        "ratio": round(ours_ips / theirs_ips, 3),
        # achieved arithmetic rate, to set against the machine's peak (e.g. 157 GFLOP/s for 2 Zen 3 cores)
        "gflop_per_image_ours": round(our_flops / args.batch / 1e9, 3),
        "gflop_per_image_diffusers": round(their_flops / args.batch / 1e9, 3),
        "gflop_per_s_ours": round(our_flops / args.batch * ours_ips / 1e9, 1),
        "gflop_per_s_diffusers": round(their_flops / args.batch * theirs_ips / 1e9, 1),
    }))


if __name__ == "__main__":
    main()
