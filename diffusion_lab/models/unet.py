"""A time-conditioned U-Net that predicts ε, x_0 or v (the DDPM architecture, Ho et al. 2020, Appendix B, made small)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab import rules
from diffusion_lab.errors import ConfigError


class SinusoidalEmbedding(nn.Module):
    """Transformer position encoding of the timestep t (Vaswani et al. 2017), dim features."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10_000) * torch.arange(half) / half), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus a projection of the time embedding, twice; residual connection."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        self.block1 = nn.Sequential(nn.GroupNorm(groups, dim_in), nn.SiLU(), nn.Conv2d(dim_in, dim_out, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out))
        self.block2 = nn.Sequential(
            nn.GroupNorm(groups, dim_out), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(dim_out, dim_out, 3, padding=1)
        )
        nn.init.zeros_(self.block2[-1].weight)  # each block starts as the identity
        nn.init.zeros_(self.block2[-1].bias)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time(temb)[:, :, None, None]
        return self.skip(x) + self.block2(h)


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual."""

    def __init__(self, dim: int, groups: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (b, heads, h*w, c/heads)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


def check_arguments(in_channels, image_size, channels, channel_mults, num_res_blocks, attention_resolutions,
                    dropout, norm_groups, num_classes, learn_sigma=False) -> None:
    """Each of the U-Net's arguments by its rule, and the attention sizes against the feature maps it has."""
    for key, rule, value in (
        ("in_channels", rules.IMAGE_CHANNELS, in_channels), ("image_size", rules.IMAGE_SIZE, image_size),
        ("channels", rules.WIDTH, channels), ("channel_mults", rules.CHANNEL_MULTS, channel_mults),
        ("num_res_blocks", rules.RES_BLOCKS, num_res_blocks),
        ("attention_resolutions", rules.ATTENTION_RESOLUTIONS, attention_resolutions),
        ("dropout", rules.DROPOUT, dropout), ("norm_groups", rules.NORM_GROUPS, norm_groups),
        ("num_classes", rules.NUM_CLASSES, num_classes), ("learn_sigma", rules.BOOLEAN, learn_sigma),
    ):
        rule.check(f"model.{key}", value)
    sizes = [image_size // 2**i for i in range(len(channel_mults))]
    if any(r not in sizes for r in attention_resolutions):
        raise ConfigError(f"model.attention_resolutions={rules.show(attention_resolutions)}: allowed entries are the "
                          f"feature-map widths of this U-Net, {', '.join(map(str, sizes))}")


class UNet(nn.Module):
    """ε_θ(x_t, t) (or x_0, v): `channels`·mult features per level, `num_res_blocks` blocks per level, attention
    at the feature-map sizes listed in `attention_resolutions`, skip connections from every down block; with
    `num_classes`, conditioned on a class label (or on none: label `num_classes`); with `learn_sigma`, twice the
    image's channels out: the prediction, then the variance output r of `GaussianDiffusion`."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (7,),
        dropout: float = 0.0,
        norm_groups: int = 8,
        num_classes: int | None = None,
        learn_sigma: bool = False,
    ):
        super().__init__()
        check_arguments(in_channels, image_size, channels, channel_mults, num_res_blocks, attention_resolutions,
                        dropout, norm_groups, num_classes, learn_sigma)
        self.learn_sigma = learn_sigma
        factor = 2 ** (len(channel_mults) - 1)
        if image_size % factor:
            allowed = [list(channel_mults[: n + 1]) for n in range(len(channel_mults)) if image_size % 2**n == 0]
            raise ConfigError(
                f"model.channel_mults={list(channel_mults)}: {len(channel_mults) - 1} downsamplings need an image "
                f"size divisible by {factor}, got {image_size}; allowed for this size: {allowed}"
            )
        widths = [channels * m for m in channel_mults]
        if any(w % norm_groups for w in widths):
            raise ConfigError(f"model.channels={channels}: every level width {widths} must be divisible by "
                              f"model.norm_groups={norm_groups}")
        time_dim = 4 * channels

        def level(dim_in: int, dim_out: int, size: int) -> nn.ModuleList:
            """A residual block, followed by attention where the feature map is `size` pixels wide."""
            res = ResBlock(dim_in, dim_out, time_dim, norm_groups, dropout)
            return nn.ModuleList([res, Attention(dim_out, norm_groups)] if size in attention_resolutions else [res])

        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(channels), nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        # Class-conditional: a label embedding added to the time embedding; index num_classes is "no class".
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, time_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        self.down, skip_widths, width, size = nn.ModuleList(), [channels], channels, image_size
        for i, out in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(level(width, out, size))
                width = out
                skip_widths.append(width)
            if i < len(widths) - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skip_widths.append(width)
                size //= 2

        self.mid = nn.ModuleList([ResBlock(width, width, time_dim, norm_groups, dropout), Attention(width, norm_groups),
                                  ResBlock(width, width, time_dim, norm_groups, dropout)])

        self.up = nn.ModuleList()
        for i, out in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(level(width + skip_widths.pop(), out, size))
                width = out
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(width, width, 3, padding=1)))
                size *= 2

        out_channels = 2 * in_channels if learn_sigma else in_channels
        self.head = nn.Sequential(nn.GroupNorm(norm_groups, width), nn.SiLU(), nn.Conv2d(width, out_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time_embed(t)
        if self.label_embed is not None:
            temb = temb + self.label_embed(labels if labels is not None else
                                           torch.full(t.shape, self.num_classes, dtype=torch.long, device=t.device))
        elif labels is not None:
            raise ValueError("labels given to an unconditional U-Net (model.num_classes is null)")
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = self._run(layer, h, temb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb)), temb)
        for layer in self.up:
            h = self._run(layer, torch.cat([h, skips.pop()], 1) if isinstance(layer, nn.ModuleList) else h, temb)
        return self.head(h)

    @staticmethod
    def _run(layer: nn.Module, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        if not isinstance(layer, nn.ModuleList):  # down- or upsampling
            return layer(h)
        res, *attn = layer
        h = res(h, temb)
        return attn[0](h) if attn else h
