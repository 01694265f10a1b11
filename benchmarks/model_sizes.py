"""Parameter count and CPU/GPU throughput of each U-Net config: training steps and sampling steps.

    python benchmarks/model_sizes.py [--batch 128] [--steps 5] [--models unet_tiny unet_small unet_base]

Prints one JSON object per model. Training images/s is the full step (forward, ε-MSE, backward, AdamW) on
random batches; sampling images/s counts network evaluations (one reverse step of one image each), so a
T=1000 chain of 64 images takes 64 000 / that figure seconds.
"""

import argparse
import json

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import diffusion_lab.resolvers  # noqa: F401  (registers the resolvers conf/ uses)
from diffusion_lab.config import CONFIG_DIR, options
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
from timing import images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=options("model"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    diffusion = GaussianDiffusion(linear_betas(1000)).to(device)
    for name in args.models:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[f"model={name}"])
        torch.manual_seed(0)
        net = instantiate(cfg.model).to(device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=2e-4)
        x0 = torch.randn(args.batch, 1, 28, 28, device=device)

        def train_step():
            t = torch.randint(0, diffusion.num_timesteps, (len(x0),), device=device)
            loss = diffusion.per_sample_loss(net, x0, t, torch.randn_like(x0)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        xt, t = torch.randn(64, 1, 28, 28, device=device), torch.full((64,), 500, device=device)

        @torch.inference_mode()
        def sample_step():
            net(xt, t)

        net.train()
        train_step()  # warm-up
        train = images_per_second(train_step, args.batch, args.steps)
        net.eval()
        sample_step()
        sample = images_per_second(sample_step, 64, args.steps)
        print(json.dumps({
            "model": name, "device": device, "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_images_per_s": round(train, 1), "batch": args.batch,
            "sampling_network_evals_per_s": round(sample, 1),
            "seconds_for_64_images_at_T1000": round(64_000 / sample, 1),
        }))


if __name__ == "__main__":
    main()
