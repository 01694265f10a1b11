"""Sample quality during training: a cheap periodic `val/fid@<steps>` and a full evaluation when training ends."""

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info

from diffusion_lab import rules
from diffusion_lab.callbacks.drawing import require_after_ema
from diffusion_lab.generation import eval_mode
from diffusion_lab.metrics import QualityMetrics
from diffusion_lab.metrics.measure import log_to_wandb, measure, results_table
from diffusion_lab.sampling import Sampler


class SampleQuality(Callback):
    """Every `every_n_epochs` validations, and at the last one (the last of fit, or the `trainer.validate` that
    train.py runs after fit stopped mid-epoch), samples `n` images with `sampler` at `steps`
    steps from the EMA weights and logs `val/fid@<steps>` (with `val/kid@…`, `val/precision@…`,
    `val/recall@…`), so sweeps and checkpoints can select on quality. When training ends, measures `final_n`
    images at each of `final_steps` (none: skipped); the results go into summary.json and W&B. A class-conditional
    model is asked for class i % C for image i (no guidance), as evaluate.py does, and `val/class_accuracy@…`
    is logged too.

    Quality is measured in the feature space of a classifier trained on the data set (see
    diffusion_lab.metrics), built and cached by rank 0 on first use. Each rank samples its share from its own
    noise stream; exactly n images are scored.
    """

    def __init__(self, dataset: str, data_dir: str, sampler: Callable[..., Sampler], steps: int = 50, n: int = 1000,
                 every_n_epochs: int = 5, final_steps: Sequence[int] = (), final_n: int = 1000, real_n: int = 10_000,
                 seed: int = 0, batch_size: int = 500, feature_net_epochs: int | None = None,
                 feature_net_cache_dir: str | None = None, resamples: int = 200):
        for key, value in (("quality.n", n), ("quality.final_n", final_n), ("quality.real_n", real_n)):
            rules.SCORED_COUNT.check(key, value)
        rules.EVERY_N_EPOCHS.check("quality.every_n_epochs", every_n_epochs)
        rules.RESAMPLES.check("quality.resamples", resamples)
        self.resamples = resamples
        self.dataset, self.data_dir, self.sampler, self.steps, self.n = dataset, data_dir, sampler, steps, n
        self.every_n_epochs, self.final_steps, self.final_n = every_n_epochs, list(final_steps), final_n
        self.real_n, self.seed, self.batch_size = real_n, seed, batch_size
        self.feature_net = {"epochs": feature_net_epochs, "cache_dir": feature_net_cache_dir}
        self.metrics: QualityMetrics | None = None
        self.latest: dict | None = None
        self.summary: dict = {}  # RunSummary adds its entries to summary.json

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.metrics is not None:
            return
        require_after_ema(trainer, self)
        T = pl_module.diffusion.num_timesteps
        rules.check_step_counts("quality.steps", self.steps, T)
        rules.check_step_counts("quality.final_steps", self.final_steps, T)
        if trainer.global_rank > 0:
            trainer.strategy.barrier()  # rank 0 trains and caches the feature net and real features when missing
        self.metrics = QualityMetrics.for_dataset(self.dataset, self.data_dir, self.real_n, device=pl_module.device,
                                                  resamples=self.resamples, **self.feature_net)
        if trainer.global_rank == 0:
            trainer.strategy.barrier()
        self.summary = {"quality": {"feature_net": self.metrics.record, "real_n": len(self.metrics.real_features),
                                    "n": self.final_n, "results": []}}

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, steps: int, n: int) -> dict:
        with eval_mode(pl_module):
            return measure(pl_module.denoiser(), self.sampler(pl_module.diffusion, steps=steps), self.metrics, n,
                           pl_module.image_shape, self.seed, self.batch_size, pl_module.device, trainer.global_rank,
                           trainer.world_size, pl_module.all_gather)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.metrics is None:  # set up by a fit
            return
        if trainer.state.fn == TrainerFn.VALIDATING:  # after fit: the final weights where it stopped mid-epoch
            self.latest = self.measure(trainer, pl_module, self.steps, self.n)
        elif trainer.state.fn == TrainerFn.FITTING:
            last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
            last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
            if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last_epoch or last_step:
                self.latest = self.measure(trainer, pl_module, self.steps, self.n)  # the EMA weights are swapped in

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.latest is not None:
            for key in ("fid", "kid_mean", "precision", "recall", "class_accuracy"):
                if key in self.latest:
                    pl_module.log(f"val/{key.removesuffix('_mean')}@{self.steps}", self.latest[key])
            self.latest = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.final_steps:
            return
        results = [self.measure(trainer, pl_module, k, self.final_n) for k in self.final_steps]
        self.summary["quality"]["results"] = results
        if trainer.is_global_zero:
            rank_zero_info("sample quality of the final (EMA) weights:\n" + results_table(results))
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    log_to_wandb(logger.experiment, results, prefix="final")
