"""Periodic sample grids at several step counts from one fixed, seeded noise batch, drawn with the EMA weights."""

from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torchvision.utils import make_grid, save_image

from diffusion_lab import rules
from diffusion_lab.callbacks.budget import TimeBudget
from diffusion_lab.callbacks.drawing import log_image, require_after_ema
from diffusion_lab.cost import announced, plan, steps_for_nfe
from diffusion_lab.generation import Share
from diffusion_lab.images import grid_layout, requested_classes
from diffusion_lab.plotting import image_axes, save, show
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling import DDPMSampler, Sampler

MIN_IMAGES = 16  # the fewest images a time budget may cut a grid to


class SampleGrid(Callback):
    """Every `every_n_epochs` validations and once when training ends, samples `n_images` images from the
    same noise with full-T ancestral DDPM and with `sampler` at each of `steps`, and saves
    `<dirpath>/<when>_<sampler>-<steps>.png` for each plus `<when>_compare.png` side by side (`when` is
    `step<global step>` or `final`), logged to every logger that takes images. For a class-conditional model
    image i is asked for class i % C (no guidance) and each grid has one row per class.

    It must come after the EMA callback: its hooks (validation start, train end) then run while the EMA
    weights are swapped or copied into the model. Image i draws from its own noise stream (seed, i), as sample.py
    and evaluate.py draw it; under DDP each rank samples its share and rank 0 writes the gathered grids.
    """

    def __init__(self, dirpath: str, n_images: int = 64, every_n_epochs: int = 1,
                 sampler: Callable[..., Sampler] | None = None, steps: Sequence[int] = (),
                 nfe: Sequence[int] | None = None, seed: int = 0):
        rules.IMAGE_COUNT.check("sampling.n_images", n_images)
        rules.EVERY_N_EPOCHS.check("sampling.every_n_epochs", every_n_epochs)
        self.dirpath = Path(dirpath)
        self.n_images, self.every_n_epochs, self.seed = n_images, every_n_epochs, seed
        self.sampler, self.steps, self.nfe = sampler, list(steps), None if nfe is None else list(nfe)
        self.saved: list[Path] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        require_after_ema(trainer, self)

    def samplers(self, pl_module: pl.LightningModule) -> list[Sampler]:
        """Full-T ancestral DDPM, then the configured sampler at each step count (or NFE budget)."""
        chosen = [DDPMSampler(pl_module.diffusion)]
        if self.sampler is not None:
            diffusion = pl_module.diffusion
            steps = self.steps if self.nfe is None else dict.fromkeys(
                steps_for_nfe(self.sampler, diffusion, k, key="sampling.nfe") for k in self.nfe)
            chosen += [self.sampler(diffusion, steps=k) for k in steps]
        return chosen

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if due and not (trainer.sanity_checking or last_epoch or last_step):  # the final grid covers the last one
            self.render(trainer, pl_module, f"step{trainer.global_step:07d}", "periodic")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.render(trainer, pl_module, "final", "grids")

    def planned(self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: str) -> tuple[int, list[Sampler], str]:
        """(images per grid, samplers, what was cut) that fit the `TimeBudget`'s time for `phase`: fewer images
        first (down to MIN_IMAGES), then the costliest chains left out (full-T DDPM first)."""
        samplers, budget = self.samplers(pl_module), TimeBudget.of(trainer)
        seconds = budget.seconds_for(trainer, phase) if budget else None
        if seconds is None:
            return self.n_images, samplers, ""
        # Measured at the smallest grid it may draw: a smaller batch costs more per image, so the plan holds.
        per_eval = budget.seconds_per_evaluation(trainer, pl_module, min(MIN_IMAGES, self.n_images))
        n, kept = plan(self.n_images, [s.network_evaluations for s in samplers], per_eval, seconds,
                       minimum=min(MIN_IMAGES, self.n_images))
        left_out, samplers = len(samplers) - len(kept), [samplers[i] for i in kept]
        cut = [f"{n} of {self.n_images} images"] * (0 < n < self.n_images) + [f"{left_out} grids left out"] * bool(left_out)
        return n, samplers, f" ({', '.join(cut)}: {budget.describe(phase, seconds)})" if cut else ""

    def render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, when: str, phase: str) -> None:
        n, samplers, cut = self.planned(trainer, pl_module, phase)
        if not n:
            rank_zero_info(f"sample grids ({when}) skipped: not even one would fit{cut}")
            return
        device, rank = pl_module.device, trainer.global_rank
        share = Share(n, rank, trainer.world_size)
        images_of_mine = range(share.first, share.first + share.per_rank)
        classes = requested_classes(None, pl_module.num_classes, share.total)
        mine = share.mine(classes, device)
        samples = {}
        budget = TimeBudget.of(trainer)
        names = ", ".join(f"{s.label}-{s.num_steps}" for s in samplers)
        with announced(f"sample grids ({when}: {n} images, {names})", n * sum(s.network_evaluations for s in samplers),
                       budget.seconds_per_evaluation(trainer, pl_module, n) if budget else 0.0, cut,
                       enabled=trainer.is_global_zero and budget is not None) as bar:
            for sampler in samplers:  # every sampler: the same streams, from their start
                noise = ImageNoise(self.seed, images_of_mine, device)
                start = noise.randn(pl_module.image_shape)
                images = share.gather(pl_module.sample(start, noise, sampler, mine), pl_module.all_gather)
                samples[f"{sampler.label}-{sampler.num_steps}"] = grid_layout(
                    images, classes[:n] if classes is not None else None, blank=1.0)
                bar.update(n * sampler.network_evaluations)
        if not trainer.is_global_zero:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        for label, (images, nrow) in samples.items():
            grid = make_grid((images + 1) / 2, nrow=nrow, padding=2, pad_value=1.0)
            save_image(grid, self.dirpath / f"{when}_{label}.png")
            self.saved.append(self.dirpath / f"{when}_{label}.png")
            log_image(trainer, f"samples/{label}", self.saved[-1], grid)
        if len(samples) > 1:
            fig, axes = image_axes(1, len(samples), panel=3.0)
            for ax, (label, (images, nrow)) in zip(axes[0], samples.items()):
                show(ax, images.cpu(), title=label, nrow=nrow)
            self.saved.append(save(fig, self.dirpath / f"{when}_compare.png"))
            log_image(trainer, "samples/compare", self.saved[-1])
