"""How long the sampling around training may take: the work after training within a budget, periodic work
within `trainer.max_time`."""

import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, Timer
from pytorch_lightning.utilities import rank_zero_info

from diffusion_lab import rules
from diffusion_lab.cost import duration, seconds_per_evaluation

AUTO = "auto"
PROBE_BATCH = 64  # past this many images per call, a CPU's time per image hardly changes


class TimeBudget(Callback):
    """The time the sampling phases may take, and this machine's measured cost of a network evaluation.

    After training, the final grids, evaluation and figures and the last `val/fid` share `seconds` (None: no
    limit). `auto`: on a CPU the larger of `fraction` of the training time and `minimum` seconds, on an
    accelerator no limit. Each phase, when it starts, gets its `SHARES` of what is left, in the order the
    phases run, so what one leaves goes to the next. During training, periodic grids and `val/fid` get the time
    left before `trainer.max_time`. Phases that do not fit are shortened (fewer images, fewer settings) or
    skipped, and say so.
    """

    SHARES = {"grids": 0.25, "evaluation": 0.75, "figures": 0.5, "validation": 1.0}

    def __init__(self, seconds: float | str | None = AUTO, fraction: float = 0.2, minimum: float = 120.0):
        rules.TIME_BUDGET.check("after_training.budget", seconds)
        self.seconds, self.fraction, self.minimum = seconds, fraction, minimum
        self.budget_seconds: float | None = None  # after training: None, no limit
        self._started = False
        self._after_training_start = 0.0
        self._fit_start = 0.0
        self._per_eval: dict[int, float] = {}

    @staticmethod
    def of(trainer: pl.Trainer) -> "TimeBudget | None":
        return next((cb for cb in trainer.callbacks if isinstance(cb, TimeBudget)), None)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start, self._started = time.perf_counter(), False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_after_training(trainer)

    def start_after_training(self, trainer: pl.Trainer) -> None:
        """Fix the time the work after training may take (once), and say what it is."""
        if self._started:
            return
        self._started = True
        trained = time.perf_counter() - self._fit_start
        seconds = self.seconds
        if seconds == AUTO:
            seconds = max(self.fraction * trained, self.minimum) if trainer.strategy.root_device.type == "cpu" else None
        self._after_training_start, self.budget_seconds = time.perf_counter(), seconds
        if seconds is not None:
            rank_zero_info(f"after training ({duration(trained)}): grids, evaluation and figures get "
                           f"{duration(seconds)} (after_training.budget={self.seconds}; null: no limit)")

    @property
    def summary(self) -> dict:
        """summary.json's `after_training`: the budget and the seconds spent since training ended."""
        if not self._started:
            return {}
        return {"after_training": {"budget_seconds": self.budget_seconds,
                                   "seconds": round(time.perf_counter() - self._after_training_start, 3)}}

    def seconds_for(self, trainer: pl.Trainer, phase: str) -> float | None:
        """Seconds `phase` may take (None: no limit): a share of the time left after training, or, for
        `periodic` work during training, the time left before `trainer.max_time`. Rank 0's clock decides, so
        every rank plans the same work."""
        if phase == "periodic":
            timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
            remaining = None if timer is None else timer.time_remaining()
            seconds = None if remaining is None else max(remaining, 0.0)
        else:
            self.start_after_training(trainer)
            spent = time.perf_counter() - self._after_training_start
            seconds = None if self.budget_seconds is None else max(self.budget_seconds - spent, 0.0) * self.SHARES[phase]
        return trainer.strategy.broadcast(seconds, src=0)

    def describe(self, phase: str, seconds: float) -> str:
        """Where a phase's `seconds` come from, for the line that says why it was cut."""
        if phase == "periodic":
            return f"{duration(seconds)} left before trainer.max_time"
        return f"its {duration(seconds)} of the time after training (after_training.budget={self.seconds})"

    def seconds_per_evaluation(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_size: int) -> float:
        """The network's seconds per image evaluation at `batch_size` (at most PROBE_BATCH), measured once per
        batch size on rank 0 and broadcast, so every rank plans the same work."""
        batch_size = min(batch_size, PROBE_BATCH)
        if batch_size not in self._per_eval:
            measured = seconds_per_evaluation(pl_module.denoiser(), pl_module.image_shape, pl_module.device,
                                              batch_size)
            self._per_eval[batch_size] = trainer.strategy.broadcast(measured, src=0)
        return self._per_eval[batch_size]
