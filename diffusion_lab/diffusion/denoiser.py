"""The network as every sampler sees it: ε_θ(x_t, t), whatever the network predicts, with classifier-free
guidance for a class-conditional network."""

import torch
from torch import nn

from diffusion_lab import rules
from diffusion_lab.diffusion.gaussian import GaussianDiffusion
from diffusion_lab.errors import ConfigError


class Denoiser(nn.Module):
    """ε(x_t, t) from `net`'s output (ε, x_0 or v, converted by `diffusion`).

    With `labels` (one class per image) a class-conditional net is asked for those classes; with
    `guidance_scale` w > 0 also for none (the null class it learned through label dropout), and the two are
    combined as (1 + w)·f(x_t, y) − w·f(x_t, ∅) (Ho & Salimans 2022). The conversion to ε is affine in the
    output, so combining outputs is combining ε. w = 0 is plain conditional sampling; without labels a
    conditional net is asked for the null class. A `learn_sigma` net's variance output r (`outputs`) is the
    conditional one's under guidance (as GLIDE does); `forward` gives ε alone, which is all most samplers use.
    """

    def __init__(self, net: nn.Module, diffusion: GaussianDiffusion, labels: torch.Tensor | None = None,
                 guidance_scale: float = 0.0):
        super().__init__()
        num_classes = getattr(net, "num_classes", None)
        if (labels is not None or guidance_scale != 0) and not num_classes:
            raise ConfigError(f"guidance_scale={guidance_scale}, class: need a class-conditional model "
                              "(trained with model.num_classes=10)")
        rules.GUIDANCE_SCALE.check("guidance_scale", guidance_scale)
        self.net, self.diffusion, self.labels, self.guidance_scale = net, diffusion, labels, guidance_scale

    def for_labels(self, labels: torch.Tensor | None) -> "Denoiser":
        """The same denoiser for another batch's classes."""
        return Denoiser(self.net, self.diffusion, labels, self.guidance_scale)

    @property
    def evaluations_per_call(self) -> int:
        """Network evaluations of one image per call: two with guidance (both halves in one batched call)."""
        return 2 if self.guidance_scale else 1

    def outputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(ε, the variance output r of a learn_sigma net, else None) at (x_t, t)."""
        w, labels = self.guidance_scale, self.labels
        if labels is None and w:
            raise ValueError("classifier-free guidance needs the classes: use for_labels(labels)")
        if labels is None:
            output, variance_output = self.diffusion.split_output(self.net(x, t))
        elif w == 0:
            output, variance_output = self.diffusion.split_output(self.net(x, t, labels))
        else:  # one network call for both halves
            null = torch.full_like(labels, self.net.num_classes)
            conditional, unconditional = (self.diffusion.split_output(half) for half in self.net(
                torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2))
            output, variance_output = (1 + w) * conditional[0] - w * unconditional[0], conditional[1]
        return self.diffusion.eps_from_output(output, x, t), variance_output

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.outputs(x, t)[0]
