"""Checkpoints a crash cannot spoil: written atomically, every N optimizer steps, every N minutes, at every epoch
end, and at the next optimizer step after a stop signal."""

import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from diffusion_lab import interrupts
from diffusion_lab.files import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file beside its destination, flushed to disk, then renamed into
    place: a process killed mid-write leaves the previous checkpoint whole and no partial file under its name.
    (Lightning's own writer goes through a temporary file in the system's temp folder, which is a copy, not a
    rename, when that folder is on another file system.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        write_atomic(Path(path), lambda f: torch.save(checkpoint, f), binary=True)


class Checkpoints(ModelCheckpoint):
    """Lightning's ModelCheckpoint saving every `every_n_train_steps` optimizer steps, every `every_n_minutes` of
    training, when each training epoch ends, and at the first optimizer step after a stop signal (see
    `interrupts`), named by step. With `monitor="step"` and `mode="max"`, `save_top_k` keeps the newest k.
    Whenever a checkpoint is written it flushes the loggers, so that the metrics file holds every step up to the
    checkpoint (a resumed run rewinds it to there, see loggers.CSVLogger)."""

    def __init__(self, *args, every_n_minutes: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # ModelCheckpoint takes one trigger (its arguments are mutually exclusive), though its batch-end hook
        # saves when either the step or the time interval is due, and its epoch-end hook saves when this private
        # field is 1; tested with Lightning 2.6, the minor version pyproject.toml pins.
        self._every_n_epochs = 1
        self._train_time_interval = timedelta(minutes=every_n_minutes) if every_n_minutes else None

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        interrupts.install()  # over the SIGTERM handler Lightning installed when fitting started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Every rank stops at the same step if any was asked to (a signal may reach rank 0 only).
        if not trainer.strategy.reduce_boolean_decision(interrupts.requested() is not None, all=False):
            return
        if self._last_global_step_saved != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        interrupts.record(interrupts.requested() or signal.SIGTERM)  # another rank's signal: SIGTERM here
        # Lightning's own stop, raised once this step's metrics are logged (SIGTERMException, which train.train
        # turns into interrupts.Interrupted); tested with Lightning 2.6, the minor version pyproject.toml pins.
        trainer._signal_connector.received_sigterm = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()
