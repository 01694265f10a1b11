"""Does fusing the U-Net's GroupNorm → SiLU chains with torch.compile speed up a training step here?

    python benchmarks/bench_fusion.py [--model unet_small] [--batch 128] [--steps 3] [--rounds 5]

Our U-Net eager, against the same U-Net whose residual blocks and head run their normalisation chains as
compiled regions: GroupNorm → SiLU, and the time embedding's add → GroupNorm → SiLU before each block's second
convolution, forward and backward each fused by Inductor into one pass over the feature map (convolutions,
attention and the rest stay eager). Both channels_last, the same weights, batch and noise; side by side in one
process, interleaved. Prints one JSON object: images/s of each training step (forward, ε-MSE, backward, AdamW),
the ratio fused / eager, and the seconds the compilation took.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from bench_train import project_config
from diffusion_lab.models.unet import ResBlock
from timing import compare, machine


def norm_act(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    return F.silu(F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps))


def shift_norm_act(x: torch.Tensor, shift: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    return norm_act(x + shift, norm)


class FusedResBlock(nn.Module):
    """`ResBlock.forward` with its normalisation chains compiled; the same parameters (those of `block`)."""

    def __init__(self, block: ResBlock, fused_norm_act, fused_shift_norm_act):
        super().__init__()
        self.block, self.norm_act, self.shift_norm_act = block, fused_norm_act, fused_shift_norm_act

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = b.block1[2](self.norm_act(x, b.block1[0]))
        h = b.block2[3](b.block2[2](self.shift_norm_act(h, b.time(temb)[:, :, None, None], b.block2[0])))
        return b.skip(x) + h


class FusedHead(nn.Module):
    def __init__(self, head: nn.Sequential, fused_norm_act):
        super().__init__()
        self.head, self.norm_act = head, fused_norm_act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head[2](self.norm_act(h, self.head[0]))


def fuse(net: nn.Module, backend: str = "inductor") -> nn.Module:
    """`net` with every ResBlock and the head replaced by their twins whose chains torch.compile compiles with
    `backend`, in place."""
    torch._dynamo.config.recompile_limit = 64  # one graph per feature-map shape, both functions
    fused_norm_act = torch.compile(norm_act, dynamic=False, backend=backend)
    fused_shift_norm_act = torch.compile(shift_norm_act, dynamic=False, backend=backend)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ResBlock):
                setattr(parent, name, FusedResBlock(child, fused_norm_act, fused_shift_norm_act))
    net.head = FusedHead(net.head, fused_norm_act)
    return net


def training_step(net: nn.Module, batch: int, image_shape: tuple[int, ...]):
    """A closure: one ε-MSE training step of `net` on a fixed batch (the same for both sides)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *image_shape, generator=generator).contiguous(memory_format=torch.channels_last)
    t, eps = torch.randint(0, 1000, (batch,), generator=generator), torch.randn(batch, *image_shape, generator=generator)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        loss = F.mse_loss(net(x, t), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet_small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cfg = project_config(f"model={args.model}")
    torch.manual_seed(0)
    eager = instantiate(cfg.model).to(memory_format=torch.channels_last)
    fused = instantiate(cfg.model).to(memory_format=torch.channels_last)
    fused.load_state_dict(eager.state_dict())
    fuse(fused)
    shape = (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    eager_step, fused_step = training_step(eager, args.batch, shape), training_step(fused, args.batch, shape)
    eager_step()
    start = time.perf_counter()
    fused_step()  # compiles every shape
    compile_seconds = time.perf_counter() - start
    fused_ips, eager_ips = compare(fused_step, eager_step, args.batch, args.steps, args.rounds)
    print(json.dumps({**machine(), "model": args.model, "batch": args.batch, "rounds": args.rounds,
                      "train_images_per_s_eager": round(eager_ips, 1), "train_images_per_s_fused": round(fused_ips, 1),
                      "ratio": round(fused_ips / eager_ips, 3), "compile_seconds": round(compile_seconds, 1)}))


if __name__ == "__main__":
    main()
