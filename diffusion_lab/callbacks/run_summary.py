"""summary.json: what a finished run achieved, written once at the end of fit by rank 0."""

import time
from collections import deque
from contextlib import suppress
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger

from diffusion_lab.files import write_json_atomic


class RunSummary(Callback):
    """Records final train loss (mean of the last `last_n_steps` steps), validation losses and other
    validation metrics, optimizer steps, wall time and training throughput (images over the time spent inside
    training batches, all ranks), and the entries of other callbacks' `summary` dicts (SampleQuality's
    `quality`).

    Written when fit ends, and again after a final `trainer.validate`, which brings the last validation loss; and
    when a run stops on a signal or an error (`status`: interrupted).
    """

    def __init__(self, path: str, run_name: str = "", last_n_steps: int = 100):
        self.path = Path(path)
        self.run_name = run_name
        self.recent_losses: deque[torch.Tensor] = deque(maxlen=last_n_steps)
        self.images = 0
        self.train_seconds = 0.0
        self._fit_start = self._batch_start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_seconds += time.perf_counter() - self._batch_start
        self.images += len(batch[0]) * trainer.world_size
        self.recent_losses.append(outputs["loss"].detach())  # no host sync in the loop

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.write(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        with suppress(OSError):  # a full disk: the error that stopped the run is the one to report
            self.write(trainer, pl_module)  # a run stopped by a signal or an error says how far it got

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self._fit_start:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        summary = {
            "run_name": self.run_name,
            "status": "interrupted" if trainer.interrupted else "finished",  # interrupted: a stop signal, an error
            "final_train_loss": float(torch.stack(list(self.recent_losses)).mean()) if self.recent_losses else None,
            "final_val_loss": metrics.pop("val/loss", None),
            "val_loss_by_t_bucket": {k.removeprefix("val/loss_"): metrics.pop(k) for k in sorted(metrics)
                                     if k.startswith("val/loss_t")},
            "val_metrics": {k.removeprefix("val/"): v for k, v in sorted(metrics.items())},
            "optimizer_steps": trainer.global_step,
            "epochs": trainer.current_epoch,
            "images_seen": self.images,
            "train_seconds": round(self.train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self._fit_start, 3),
            "train_images_per_second": round(self.images / self.train_seconds, 2) if self.train_seconds else None,
            "parameters": sum(p.numel() for p in pl_module.net.parameters()),
            "T": pl_module.diffusion.num_timesteps,
            "alphas_cumprod_T": float(pl_module.diffusion.alphas_cumprod[-1]),
            "world_size": trainer.world_size,
        }
        for callback in trainer.callbacks:
            summary |= getattr(callback, "summary", {})
        write_json_atomic(self.path, summary)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(summary)
