"""The figures of diffusion_lab.viz for the trained model, drawn once when training ends, with as many image rows
as the time budget allows."""

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info

from diffusion_lab.callbacks.budget import TimeBudget
from diffusion_lab.callbacks.drawing import log_image, require_after_ema
from diffusion_lab.cost import affordable, announced
from diffusion_lab.generation import eval_mode
from diffusion_lab.images import to_model_space
from diffusion_lab.viz import draw_all, evaluations_per_image


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
        budget = TimeBudget.of(trainer)
        if budget is None:
            per_eval, seconds = 0.0, None
        else:  # every rank takes part in the measurement (a broadcast); rank 0 draws
            per_eval = budget.seconds_per_evaluation(trainer, pl_module, self.n_images)
            seconds = budget.seconds_for(trainer, "figures")
        if not trainer.is_global_zero:
            return
        per_image = evaluations_per_image(pl_module.diffusion, self.steps, self.samplers)
        n = affordable(self.n_images, per_image, per_eval, seconds)
        cut = f" ({n} of {self.n_images} image rows: {budget.describe('figures', seconds)})" if n < self.n_images else ""
        if not n:
            rank_zero_info(f"figures skipped: not even one image row would fit{cut}")
            return
        images = to_model_space(trainer.datamodule.val_images[:n]).to(pl_module.device)
        with eval_mode(pl_module), announced(f"figures ({n} image rows)", n * per_image, per_eval, cut,
                                             enabled=budget is not None):
            self.saved = draw_all(pl_module.denoiser(), pl_module.diffusion, images, self.dirpath, self.seed,
                                  self.steps, self.samplers)
        for path in self.saved:
            log_image(trainer, f"figures/{path.stem}", path)
