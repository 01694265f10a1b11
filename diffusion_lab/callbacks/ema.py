"""Exponential moving average of the weights, on Lightning's WeightAveraging, with a decay warm-up."""

import torch
from pytorch_lightning.callbacks import WeightAveraging

from diffusion_lab import rules


def ema_weight(n: int, decay: float, gamma: float | None = None) -> float:
    """1 − d_n for θ_ema ← d_n·θ_ema + (1 − d_n)·θ at update n (0-based), d_n = min(decay, (1 + n)/(10 + n));
    with `gamma`, the power-function EMA d_n = (1 − 1/(n + 1))^(γ+1) (Karras et al. 2024, eq. 3), whose
    average spans a fixed share of the run however long it is (relative width
    σ_rel = sqrt((γ+1) / ((γ+2)²·(γ+3))): γ = 6.94 for 0.10, 16.97 for 0.05). The first update copies the weights.

    Without the warm-up, a decay of 0.999 keeps e^{-1} ≈ 37% of the initial weights after 1,000 steps,
    so short runs would sample from nearly untrained weights.
    """
    if n == 0:
        return 1.0
    return 1.0 - (n / (n + 1)) ** (gamma + 1) if gamma is not None else 1.0 - min(decay, (1 + n) / (10 + n))


class EMA(WeightAveraging):
    """Keeps an EMA of the LightningModule's weights; they are swapped in for validation and sampling,
    stored as the checkpoint's `state_dict` (the raw weights under `current_model_state`), and copied
    into the model when training ends.

    The update count lives on the host, so an update is one fused lerp with a Python weight: unlike
    AveragedModel.update_parameters, which compares its device counter with 0, it never waits for the device.
    """

    def __init__(self, decay: float = 0.999, gamma: float | None = None, **kwargs):
        rules.EMA_DECAY.check("callbacks.ema.decay", decay)
        rules.EMA_GAMMA.check("callbacks.ema.gamma", gamma)
        super().__init__(use_buffers=False, **kwargs)
        self.decay, self.gamma = decay, gamma
        self.updates: int | None = None  # the host's copy of the averaged model's n_averaged

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.updates = None

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step <= self._latest_update_step:  # no optimizer step in this batch (accumulation)
            return
        average = self._average_model
        if self.updates is None:  # once per fit: 0, or the count restored from a checkpoint
            self.updates = int(average.n_averaged)
        torch._foreach_lerp_(list(average.module.parameters()), [p.detach() for p in pl_module.parameters()],
                             ema_weight(self.updates, self.decay, self.gamma))
        buffers = list(average.module.buffers())
        if buffers:  # not averaged: kept equal to the model's, as AveragedModel does with use_buffers=False
            torch._foreach_copy_(buffers, [b.detach() for b in pl_module.buffers()])
        average.n_averaged += 1
        self.updates += 1
        self._latest_update_step = trainer.global_step
