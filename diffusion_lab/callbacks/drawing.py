"""What the callbacks that draw images share: their place after the EMA, and sending images to the loggers."""

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, WeightAveraging
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from diffusion_lab.errors import ConfigError


def require_after_ema(trainer: pl.Trainer, callback: Callback) -> None:
    """ConfigError unless the EMA callback comes before `callback`, whose hooks then see the EMA weights."""
    averaging = [i for i, cb in enumerate(trainer.callbacks) if isinstance(cb, WeightAveraging)]
    if averaging and averaging[0] > trainer.callbacks.index(callback):
        names = [type(cb).__name__ for cb in trainer.callbacks]
        raise ConfigError(
            f"callbacks order {names}: the EMA callback must come before {type(callback).__name__}, "
            "or images would be drawn with the raw weights"
        )


def log_image(trainer: pl.Trainer, key: str, path: Path, tensor: torch.Tensor | None = None) -> None:
    """Send an image file to each logger that takes images (W&B; TensorBoard when the tensor is given)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger) and tensor is not None:
            logger.experiment.add_image(key, tensor, trainer.global_step)
