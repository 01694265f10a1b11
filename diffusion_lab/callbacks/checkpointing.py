"""Checkpoints a crash cannot spoil: written atomically, every N optimizer steps and at every epoch end."""

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from diffusion_lab.files import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file beside its destination, flushed to disk, then renamed into
    place: a process killed mid-write leaves the previous checkpoint whole and no partial file under its name.
    (Lightning's own writer goes through a temporary file in the system's temp folder, which is a copy, not a
    rename, when that folder is on another file system.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        write_atomic(Path(path), lambda f: torch.save(checkpoint, f), binary=True)


class Checkpoints(ModelCheckpoint):
    """Lightning's ModelCheckpoint saving both every `every_n_train_steps` optimizer steps and when each
    training epoch ends, named by step. With `monitor="step"` and `mode="max"`, `save_top_k` keeps the newest k.
    Whenever a checkpoint is written it flushes the loggers, so that the metrics file holds every step up to the
    checkpoint (a resumed run rewinds it to there, see loggers.CSVLogger)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ModelCheckpoint takes one trigger (its arguments are mutually exclusive): with every_n_train_steps it
        # never saves at epoch ends. Its own epoch-end hook saves when this private field is 1; tested with
        # Lightning 2.6, the minor version pyproject.toml pins.
        self._every_n_epochs = 1

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()
