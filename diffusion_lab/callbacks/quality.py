"""Sample quality during training: a cheap periodic `val/fid@<steps>` and a full evaluation when training ends."""

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info

from diffusion_lab import rules
from diffusion_lab.callbacks.budget import TimeBudget
from diffusion_lab.callbacks.drawing import require_after_ema
from diffusion_lab.cost import announced, plan
from diffusion_lab.generation import eval_mode, sampling_batch_size
from diffusion_lab.metrics import QualityMetrics, uncertainty
from diffusion_lab.metrics.measure import (comparisons, log_to_wandb, measure, paired_table, results_table,
                                          setting_name)
from diffusion_lab.sampling import Sampler

MIN_N = 100  # the fewest images a time budget may cut a measurement to
SAMPLING_SHARE = 0.8  # of a measurement's time: the rest is left for scoring (features, k-NN balls, bootstrap)
VAL_METRICS = {"fid": "fid", "kid_mean": "kid", "precision": "precision", "recall": "recall",
               "class_accuracy": "class_accuracy", "n": "quality_n"}  # result key: logged as val/<name>@<steps>


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
                 seed: int = 0, batch_size: int | str = "auto", feature_net_epochs: int | None = None,
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
        self.latest: list[dict] | None = None
        self.paired: list[dict] = []
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

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, steps: int, n: int,
                on_batch=None) -> tuple[dict, dict]:
        """(result without intervals, its statistics for the bootstrap) of n images at `steps` steps."""
        with eval_mode(pl_module):
            return measure(pl_module.denoiser(), self.sampler(pl_module.diffusion, steps=steps), self.metrics, n,
                           pl_module.image_shape, self.seed, self.batch(n, pl_module), pl_module.device,
                           trainer.global_rank, trainer.world_size, pl_module.all_gather, return_statistics=True,
                           on_batch=on_batch)

    def batch(self, n: int, pl_module: pl.LightningModule) -> int:
        """Images per network call for n images (`batch_size`, or auto: the device's, `sampling_batch_size`)."""
        return sampling_batch_size(n, pl_module.device, self.batch_size)

    def planned(self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: str, steps: list[int],
                n: int) -> tuple[int, list[int], str]:
        """(images per step count, step counts, what was cut) that fit the `TimeBudget`'s time for `phase`: fewer
        images first (down to MIN_N), then the largest step counts left out."""
        budget = TimeBudget.of(trainer)
        seconds = budget.seconds_for(trainer, phase) if budget else None
        if seconds is None:
            return n, steps, ""
        per_eval = budget.seconds_per_evaluation(trainer, pl_module, self.batch(n, pl_module))
        planned_n, indices = plan(n, [self.evaluations(pl_module, [k]) for k in steps], per_eval,
                                  SAMPLING_SHARE * seconds, minimum=min(MIN_N, n))
        kept = [steps[i] for i in indices]
        cut = [f"n = {planned_n} of {n}"] * (0 < planned_n < n) + [f"steps {sorted(set(steps) - set(kept))} left out"] * (
            len(kept) < len(steps))
        return planned_n, kept, f" ({', '.join(cut)}: {budget.describe(phase, seconds)})" if cut else ""

    def evaluations(self, pl_module: pl.LightningModule, steps: list[int]) -> int:
        """Network evaluations per image of one chain at each of `steps`, together."""
        return sum(self.sampler(pl_module.diffusion, steps=k).network_evaluations for k in steps)

    def measure_all(self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: str, title: str,
                    steps: list[int], n: int) -> list[dict]:
        """Measure the sampler at each of `steps`, as many images as the time budget allows, announced and
        with a progress bar; the intervals and the paired differences of each step count against the largest
        (the same seeds) from one bootstrap go into the results and `self.paired`."""
        n, steps, cut = self.planned(trainer, pl_module, phase, steps, n)
        if not n:
            rank_zero_info(f"{title} skipped: not even {MIN_N} images would fit{cut}")
            return []
        budget = TimeBudget.of(trainer)
        per_eval = budget.seconds_per_evaluation(trainer, pl_module, self.batch(n, pl_module)) if budget else 0.0
        results, statistics = [], {}
        name = self.sampler(pl_module.diffusion, steps=steps[0]).label
        with announced(f"{title} ({name} at {steps} steps, n = {n})", n * self.evaluations(pl_module, steps),
                       per_eval, cut, enabled=trainer.is_global_zero and budget is not None) as bar:
            for k in steps:
                per_image = self.evaluations(pl_module, [k])
                result, statistics[k] = self.measure(trainer, pl_module, k, n,
                                                     on_batch=lambda b: bar.update(b * trainer.world_size * per_image))
                results.append(result)
        self.paired = []
        if self.resamples:
            cis, paired = uncertainty.bootstrap({setting_name(r): statistics[r["steps"]] for r in results},
                                                len(self.metrics.real_features), n, self.resamples,
                                                pairs=comparisons(results))
            for result in results:
                result |= cis[setting_name(result)]
            self.paired = paired
        return results

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.metrics is None:  # set up by a fit
            return
        if trainer.state.fn == TrainerFn.VALIDATING:  # after fit: the final weights where it stopped mid-epoch
            self.latest = self.measure_all(trainer, pl_module, "validation", f"val/fid@{self.steps}", [self.steps],
                                           self.n)
        elif trainer.state.fn == TrainerFn.FITTING:
            last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
            last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
            if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last_epoch or last_step:
                self.latest = self.measure_all(trainer, pl_module, "periodic", f"val/fid@{self.steps}",
                                               [self.steps], self.n)  # the EMA weights are swapped in

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for result in self.latest or []:  # with the n it was measured on, which the time budget may have cut
            for key, name in VAL_METRICS.items():
                if key in result:
                    pl_module.log(f"val/{name}@{self.steps}", float(result[key]))
        self.latest = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.final_steps:
            return
        results = self.measure_all(trainer, pl_module, "evaluation", "final evaluation", self.final_steps,
                                   self.final_n)
        self.summary["quality"] |= {"results": results, "n": results[0]["n"] if results else 0,
                                    "paired": self.paired}
        if not results:
            return
        if trainer.is_global_zero:
            paired = f"\npaired differences (* the 95 % interval excludes 0):\n{paired_table(self.paired)}" \
                if self.paired else ""
            rank_zero_info("sample quality of the final (EMA) weights:\n" + results_table(results) + paired)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    log_to_wandb(logger.experiment, results, prefix="final", paired=self.paired)
