"""The CPU recipe's training pieces: the learning rate that decays to the end of the budget, the power-function
EMA, the recipe presets, and the sampling batch size picked for the device."""

import math
from datetime import timedelta

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer

from diffusion_lab.callbacks import EMA
from diffusion_lab.callbacks.ema import ema_weight
from diffusion_lab.data import DiffusionDataModule
from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas
from diffusion_lab.errors import ConfigError
from diffusion_lab.generation import CPU_BATCH, sampling_batch_size
from diffusion_lab.models import UNet
from diffusion_lab.module import DiffusionModule, lr_factor


LR = 1e-3


def tiny_module(schedule: str, warmup_steps: int = 3) -> DiffusionModule:
    net = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), norm_groups=4)
    return DiffusionModule(net, GaussianDiffusion(cosine_betas(10)), val_size=16, warmup_steps=warmup_steps,
                           lr_schedule=schedule, optimizer=lambda params: torch.optim.SGD(params, lr=LR))


class LearningRates(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def learning_rates(tiny_data, schedule: str, **trainer_args) -> list[float]:
    rates = LearningRates()
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=4, val_size=16, download=False)
    trainer = pl.Trainer(limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[rates], **trainer_args)
    trainer.fit(tiny_module(schedule), dm)
    return rates.seen


def test_the_cosine_warms_up_then_follows_a_half_cosine_to_zero_at_max_steps(tiny_data):
    steps = 12
    seen = learning_rates(tiny_data, "cosine", max_steps=steps)
    expected = [LR * min(1, (k + 1) / 3) * 0.5 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
    assert seen == pytest.approx(expected, rel=1e-6)
    constant = learning_rates(tiny_data, "constant", max_steps=steps)
    assert constant == pytest.approx([LR * min(1, (k + 1) / 3) for k in range(steps)])


def test_the_cosine_follows_the_clock_under_max_time(tiny_data, monkeypatch):
    """With trainer.max_time the share spent is the time's: a clock that advances 10 s per step through a 100 s
    budget puts step k ≥ 1 at progress 10·(k − 1)/100, the clock read when the scheduler stepped after step k − 1
    (max_steps, far away, does not matter)."""
    clock = {"now": 0.0}
    monkeypatch.setattr("pytorch_lightning.callbacks.timer.time.monotonic", lambda: clock["now"])

    class Tick(pl.Callback):
        def on_train_batch_end(self, *args):
            clock["now"] += 10.0

    rates = LearningRates()
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=4, val_size=16, download=False)
    trainer = pl.Trainer(max_steps=10_000, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, max_time=timedelta(seconds=100), callbacks=[rates, Tick()])
    trainer.fit(tiny_module("cosine", warmup_steps=1), dm)
    k = len(rates.seen)
    assert 9 <= k <= 11  # stopped by the clock
    progress = [r / LR for r in rates.seen[:8]]
    expected = [0.5 * (1 + math.cos(math.pi * max(0, k - 1) / 10)) for k in range(8)]
    assert progress == pytest.approx(expected, abs=1e-3)


def test_lr_factor_is_the_warm_up_times_the_cosine():
    assert lr_factor(0, 4, "cosine", 0.0) == pytest.approx(0.25)
    assert lr_factor(10, 4, "cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor(10, 4, "cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor(10, 4, "constant", 0.9) == 1.0


def test_the_power_ema_keeps_the_average_karras_et_al_define():
    """d_n = (1 − 1/(n+1))^(γ+1) makes the EMA after t updates the mean of the weights w_k (1-based k) weighted by
    k^(γ+1) − (k − 1)^(γ+1) ≈ (γ+1)·k^γ: the power profile of Karras et al. 2024, eq. 3."""
    gamma, values = 6.94, torch.randn(50, dtype=torch.float64)
    ema = torch.zeros((), dtype=torch.float64)
    for n, w in enumerate(values):
        ema = torch.lerp(ema, w, ema_weight(n, 0.999, gamma))
    k = torch.arange(1, 51, dtype=torch.float64)
    profile = k ** (gamma + 1) - (k - 1) ** (gamma + 1)
    assert ema.item() == pytest.approx(float((profile * values).sum() / profile.sum()), rel=1e-9)
    assert ema_weight(0, 0.999, gamma) == 1.0


def test_a_bad_gamma_or_lr_schedule_is_refused():
    with pytest.raises(ConfigError, match="callbacks.ema.gamma"):
        EMA(gamma=0.0)
    with pytest.raises(ConfigError, match="module.lr_schedule.*constant.*cosine"):
        tiny_module("step")


def test_sampling_batch_size_is_the_devices_unless_asked():
    assert sampling_batch_size(1000, "cpu") == CPU_BATCH
    assert sampling_batch_size(10, "cpu") == 10
    assert sampling_batch_size(1000, "cpu", 256) == 256
