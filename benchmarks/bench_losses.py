"""What learned variances cost a training step: L_simple against L_hybrid (model.learn_sigma=true) and L_vlb,
the same recipe network, batch and optimizer, side by side in one process.

    python benchmarks/bench_losses.py [--experiment cpu_mnist] [--batch 64] [--steps 10] [--rounds 3]

Each side is forward, loss, backward and a fused AdamW step on random images in [−1, 1] (the loss's cost does not
depend on the pixels). Prints one JSON object: images/s of each loss (median over interleaved rounds) and each
ratio to L_simple.
"""

import argparse
import json
import statistics

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import diffusion_lab.resolvers  # noqa: F401  (registers the resolvers conf/ uses)
from diffusion_lab.config import CONFIG_DIR
from timing import images_per_second, machine

LOSSES = {  # the overrides of each side (L_vlb alone takes no Min-SNR weighting: it has no L_simple to weight)
    "simple": [],
    "hybrid": ["model.learn_sigma=true", "loss=hybrid"],
    "vlb": ["model.learn_sigma=true", "loss=vlb", "loss_weighting=none"],
}


def train_step(experiment: str, overrides: list[str], batch: int):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
    torch.manual_seed(0)
    net, diffusion = instantiate(cfg.model), instantiate(cfg.module.diffusion)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    x0 = torch.rand(batch, 1, 28, 28) * 2 - 1
    generator = torch.Generator().manual_seed(0)

    def step():
        t = torch.randint(0, diffusion.num_timesteps, (batch,), generator=generator)
        loss = diffusion.per_sample_loss(net, x0, t, torch.randn(x0.shape, generator=generator)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="cpu_mnist")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    steps = {name: train_step(args.experiment, overrides, args.batch) for name, overrides in LOSSES.items()}
    for step in steps.values():
        step()  # warm-up
    rounds = [{name: images_per_second(step, args.batch, args.steps) for name, step in steps.items()}
              for _ in range(args.rounds)]
    speed = {name: statistics.median(r[name] for r in rounds) for name in LOSSES}
    print(json.dumps({"machine": machine(), "experiment": args.experiment, "batch": args.batch,
                      "images_per_second": {k: round(v, 1) for k, v in speed.items()},
                      "ratio_to_simple": {k: round(v / speed["simple"], 3) for k, v in speed.items()}}, indent=1))


if __name__ == "__main__":
    main()
