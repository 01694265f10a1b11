"""Periodic sample grids from a fixed, seeded noise batch, drawn with the EMA weights."""

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, WeightAveraging
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from torchvision.utils import make_grid, save_image

from diffusion_lab.errors import ConfigError


class SampleGrid(Callback):
    """Every `every_n_epochs` validations and once when training ends, samples `n_images` images with the
    module's default sampler and saves `<dirpath>/step<global step>.png` (and `final.png`), logged to every
    logger that takes images.

    It must come after the EMA callback: its hooks (validation start, train end) then run while the EMA
    weights are swapped or copied into the model. Under DDP each rank samples its share from its own seed
    (seed + rank) and rank 0 writes the gathered grid.
    """

    def __init__(self, dirpath: str, n_images: int = 64, every_n_epochs: int = 1, seed: int = 0):
        if n_images < 1 or every_n_epochs < 1:
            raise ConfigError(
                f"sampling.n_images={n_images}, sampling.every_n_epochs={every_n_epochs}: both must be >= 1"
            )
        self.dirpath = Path(dirpath)
        self.n_images, self.every_n_epochs, self.seed = n_images, every_n_epochs, seed
        self.saved: list[Path] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        names = [type(cb).__name__ for cb in trainer.callbacks]
        averaging = [i for i, cb in enumerate(trainer.callbacks) if isinstance(cb, WeightAveraging)]
        if averaging and averaging[0] > trainer.callbacks.index(self):
            raise ConfigError(
                f"callbacks order {names}: the EMA callback must come before SampleGrid, "
                "or grids would be drawn with the raw weights"
            )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if due and not (trainer.sanity_checking or last_epoch or last_step):  # the final grid covers the last one
            self.render(trainer, pl_module, f"step{trainer.global_step:07d}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.render(trainer, pl_module, "final")

    def render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str) -> None:
        per_rank = math.ceil(self.n_images / trainer.world_size)
        generator = torch.Generator(pl_module.device).manual_seed(self.seed + trainer.global_rank)
        noise = torch.randn(per_rank, *pl_module.image_shape, generator=generator, device=pl_module.device)
        images = pl_module.all_gather(pl_module.sample(noise, generator))
        if not trainer.is_global_zero:
            return
        images = images.reshape(-1, *pl_module.image_shape)[: self.n_images]
        grid = make_grid((images + 1) / 2, nrow=math.ceil(math.sqrt(self.n_images)), padding=2, pad_value=1.0)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"{name}.png"
        save_image(grid, path)
        self.saved.append(path)
        log_image(trainer, "samples/ddpm", path, grid)


def log_image(trainer: pl.Trainer, key: str, path: Path, grid: torch.Tensor) -> None:
    """Send an image to each logger that takes images (W&B, TensorBoard)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, trainer.global_step)
