"""The figures of diffusion_lab.viz for the trained model, drawn once when training ends."""

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from diffusion_lab.callbacks.drawing import log_image, require_after_ema
from diffusion_lab.generation import eval_mode
from diffusion_lab.images import to_model_space
from diffusion_lab.viz import draw_all


class Figures(Callback):
    """At the end of training (after the EMA weights are copied into the model), rank 0 draws the six figures
    of `diffusion_lab.viz` with the first `n_images` validation images into `dirpath` and logs them."""

    def __init__(self, dirpath: str, steps: Sequence[int] = (50, 100, 200),
                 samplers: Sequence[str] = ("ddpm", "ddim", "dpm_solver"), n_images: int = 4, seed: int = 0):
        self.dirpath, self.steps, self.samplers = Path(dirpath), list(steps), list(samplers)
        self.n_images, self.seed = n_images, seed
        self.saved: list[Path] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        require_after_ema(trainer, self)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        images = to_model_space(trainer.datamodule.val_images[: self.n_images]).to(pl_module.device)
        with eval_mode(pl_module):
            self.saved = draw_all(pl_module.denoiser(), pl_module.diffusion, images, self.dirpath, self.seed,
                                  self.steps, self.samplers)
        for path in self.saved:
            log_image(trainer, f"figures/{path.stem}", path)
