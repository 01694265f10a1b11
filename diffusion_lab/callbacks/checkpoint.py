"""Checkpoints a crash cannot spoil: written atomically, every N optimizer steps and at every epoch end."""

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from diffusion_lab.runs import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file beside its destination, flushed to disk, then renamed into
    place: a process killed mid-write leaves the previous checkpoint whole and no partial file under its name.
    (Lightning's own writer goes through a temporary file in the system's temp folder, which is a copy, not a
    rename, when that folder is on another file system.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        write_atomic(Path(path), lambda f: torch.save(checkpoint, f), binary=True)


class Checkpoints(ModelCheckpoint):
    """Lightning's ModelCheckpoint saving both every `every_n_train_steps` optimizer steps and when each
    training epoch ends (ModelCheckpoint takes one trigger or the other), named by step. With `monitor="step"`
    and `mode="max"`, `save_top_k` keeps the newest k. Before each save it flushes the loggers, so that the
    metrics file holds every step up to the checkpoint (a resumed run rewinds it to there, see loggers.CSVLogger).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        for logger in trainer.loggers:
            logger.save()
        super()._save_checkpoint(trainer, filepath)
