"""Exponential moving average of the weights, on Lightning's WeightAveraging, with a decay warm-up."""

import torch
from pytorch_lightning.callbacks import WeightAveraging


def ema_warmup_multi_avg_fn(decay: float):
    """θ_ema ← d·θ_ema + (1 − d)·θ with d = min(decay, (1 + n)/(10 + n)) after n updates.

    Without the warm-up, a decay of 0.999 keeps e^{-1} ≈ 37% of the initial weights after 1,000 steps,
    so short runs would sample from nearly untrained weights.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"callbacks.ema.decay={decay}: allowed values are 0 <= decay < 1")

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged: torch.Tensor) -> None:
        n = num_averaged.to(torch.float32)
        weight = 1 - torch.clamp((1 + n) / (10 + n), max=decay)
        torch._foreach_lerp_(ema_params, current_params, weight.to(ema_params[0].dtype))

    return update


class EMA(WeightAveraging):
    """Keeps an EMA of the LightningModule's weights; they are swapped in for validation and sampling,
    stored as the checkpoint's `state_dict` (the raw weights under `current_model_state`), and copied
    into the model when training ends."""

    def __init__(self, decay: float = 0.999, use_buffers: bool = False, **kwargs):
        super().__init__(use_buffers=use_buffers, multi_avg_fn=ema_warmup_multi_avg_fn(decay), **kwargs)
        self.decay = decay
