"""How training draws t: uniformly, or by importance from each t's loss history (Nichol & Dhariwal 2021, §3.3)."""

import torch
from torch import nn

from diffusion_lab import rules

HISTORY = 10  # losses remembered per t
UNIFORM_SHARE = 0.001  # of the probability spread uniformly, so that no t is ever left out (as improved-diffusion)


class TimestepSampler(nn.Module):
    """t ~ Uniform{0..T−1} with weights 1, or with `importance`, the "loss-second-moment" sampler: uniform until
    every t has HISTORY losses, then p_t ∝ sqrt(E[L_t²]) over the last HISTORY losses of each t (mixed with
    UNIFORM_SHARE of uniform), each sample weighted by 1/(T·p_t) so that the weighted loss is unbiased.

    The history is saved in checkpoints (persistent buffers), so a resumed run draws what the original would
    have, and `update` must be given the losses of the whole global batch, in its order, on every process,
    so that all processes keep the same history and draw the same t.
    """

    def __init__(self, num_timesteps: int, importance: bool = False):
        super().__init__()
        rules.T.check("T", num_timesteps)
        self.num_timesteps, self.importance = num_timesteps, importance
        if importance:
            self.register_buffer("loss_history", torch.zeros(num_timesteps, HISTORY, dtype=torch.float64))
            self.register_buffer("loss_counts", torch.zeros(num_timesteps, dtype=torch.long))

    @property
    def warmed_up(self) -> bool:
        return self.importance and bool((self.loss_counts == HISTORY).all())

    def probabilities(self) -> torch.Tensor:
        """p_t for t = 0..T−1 (float64)."""
        if not self.warmed_up:
            return torch.full((self.num_timesteps,), 1 / self.num_timesteps, dtype=torch.float64)
        p = self.loss_history.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return (p * (1 - UNIFORM_SHARE) + UNIFORM_SHARE / self.num_timesteps).cpu()

    def sample(self, n: int, device, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, weight) of n samples; before the warm-up exactly the draw of a uniform sampler."""
        if not self.warmed_up:
            t = torch.randint(0, self.num_timesteps, (n,), device=device, generator=generator)
            return t, torch.ones(n, device=device)
        p = self.probabilities().to(device)
        t = torch.multinomial(p, n, replacement=True, generator=generator)
        return t, (1 / (self.num_timesteps * p[t])).float()

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Remember the (unweighted) losses of the global batch at their t, oldest first, per t."""
        if not self.importance:
            return
        history, counts = self.loss_history.cpu().numpy().copy(), self.loss_counts.cpu().numpy().copy()
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if counts[step] == HISTORY:
                history[step, :-1] = history[step, 1:]
                history[step, -1] = loss
            else:
                history[step, counts[step]] = loss
                counts[step] += 1
        self.loss_history.copy_(torch.from_numpy(history))
        self.loss_counts.copy_(torch.from_numpy(counts))
