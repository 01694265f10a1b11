"""The LightningModule: training on the target the diffusion names (ε, x_0 or v), a fixed validation loss, and
sampling from the trained model."""

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import nn
from torchmetrics import MeanMetric

from diffusion_lab.checkpoints import fingerprint
from diffusion_lab.diffusion import Denoiser, GaussianDiffusion
from diffusion_lab.diffusion.timesteps import TimestepSampler
from diffusion_lab import rules
from diffusion_lab.errors import ConfigError, TrainingError
from diffusion_lab.generation import eval_mode
from diffusion_lab.images import to_model_space
from diffusion_lab.rng import TRAIN_NOISE, rng_states, seeded_generator, set_rng_states
from diffusion_lab.sampling import DDPMSampler, Noise, Sampler

VAL_BUCKETS = 10


def lr_factor(step: int, warmup_steps: int, schedule: str = "constant", progress: float = 0.0) -> float:
    """The learning rate's factor at optimizer `step`: a linear warm-up from 1/warmup_steps to 1 over the first
    warmup_steps steps, then 1 (`constant`) or ½·(1 + cos(π·progress)) (`cosine`, SGDR without restarts,
    Loshchilov & Hutter 2017), `progress` being the share of the training budget spent (0 → 1)."""
    warmup = min(1.0, (step + 1) / max(1, warmup_steps))
    return warmup if schedule == "constant" else warmup * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def budget_spent(step: int, total_steps: float, timer: Timer | None) -> float:
    """The share of the training budget spent at optimizer `step`, 0 → 1: the larger of step / total_steps (the
    steps that trainer.max_steps or max_epochs allow; inf: no limit) and the training time over trainer.max_time
    (Lightning's `timer`, when there is one). A run stopped by max_time follows the clock, so its cosine
    reaches zero when the time is up."""
    spent = [step / total_steps if math.isfinite(total_steps) and total_steps > 0 else 0.0]
    remaining = timer.time_remaining("train") if timer else None
    if remaining is not None:
        elapsed = timer.time_elapsed("train")
        spent.append(elapsed / max(elapsed + remaining, 1e-9))
    return min(1.0, max(spent))


class DiffusionModule(pl.LightningModule):
    """Trains `net` to predict what `diffusion.prediction` says (ε, x_0 or v) under `diffusion`; a class-conditional
    net (`num_classes`) is given the image's label, replaced by the null class with probability `p_uncond`.

    `channels_last` stores the network's weights in NHWC, so that its convolutions run in that layout;
    `compile` compiles its forward with torch.compile when fitting starts.

    `t_sampler` draws the training t: uniform, or importance (`TimestepSampler`); auto: importance for
    loss=vlb, as Nichol & Dhariwal trained L_vlb, else uniform.

    Validation is deterministic: test image i always gets the same t and noise, with t stratified
    over {0..T−1}, so `val/loss` and its ten t-buckets `val/loss_t{k}` (t/T in [k/10, (k+1)/10))
    are comparable across epochs and runs with the same seed. `val/bpd` (every `val_bpd.every_n_epochs`
    epochs) is the variational bound of the first `val_bpd.images` test images in bits per dimension, estimated
    as L_T + L_0 + Σ_j w_j·L_{t_j} over k = `val_bpd.timesteps` t_j, one from each of k geometric strata of
    {1..T−1} of widths w_j (`setup_val_bpd`), each image's t_j and noise fixed: unbiased, on one scale for
    every T.
    """

    # Device types whose values the host reads without waiting: their progress bar shows every step's loss, and
    # a non-finite loss stops training before its update. Elsewhere it is caught at the next checkpoint or
    # validation, always before a checkpoint is written.
    host_devices = ("cpu",)

    def __init__(
        self,
        net: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer],
        warmup_steps: int = 500,
        lr_schedule: str = "constant",
        image_size: int = 28,
        channels: int = 1,
        val_size: int = 2000,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        p_uncond: float = 0.1,
        t_sampler: str = "auto",
        val_bpd: dict | None = None,
    ):
        super().__init__()
        if getattr(net, "learn_sigma", False) != diffusion.learn_sigma:
            raise ConfigError(f"module.diffusion.learn_sigma={diffusion.learn_sigma}: allowed is the network's own "
                              f"model.learn_sigma={getattr(net, 'learn_sigma', False)}")
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.compile_net = compile
        self.diffusion = diffusion
        self.optimizer_factory = optimizer
        rules.LR_SCHEDULE.check("module.lr_schedule", lr_schedule)
        self.warmup_steps, self.lr_schedule = warmup_steps, lr_schedule
        self.budget: tuple[float, Timer | None] | None = None  # set by configure_optimizers for a decaying schedule
        self.seed = seed
        self.num_classes = getattr(net, "num_classes", None)  # class-conditional when set
        self.p_uncond = p_uncond
        self.image_shape = (channels, image_size, image_size)
        T = diffusion.num_timesteps
        rules.T_SAMPLER.check("t_sampler", t_sampler)
        importance = t_sampler == "importance" or (t_sampler == "auto" and diffusion.loss == "vlb")
        self.timestep_sampler = TimestepSampler(T, importance)
        generator = torch.Generator().manual_seed(seed)
        val_t = (torch.arange(val_size) * T // val_size)[torch.randperm(val_size, generator=generator)]
        self.register_buffer("val_t", val_t, persistent=False)
        self.register_buffer("val_noise", torch.randn(val_size, *self.image_shape, generator=generator), persistent=False)
        self.register_buffer("val_bucket", val_t * VAL_BUCKETS // T, persistent=False)
        self.val_losses: torch.Tensor | None = None
        self.val_bpd = {"images": 100, "timesteps": 10, "every_n_epochs": 1} | dict(val_bpd or {})
        self.setup_val_bpd(min(self.val_bpd["images"], val_size), T, generator)
        self.last_validated_step = -1
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)  # first non-finite loss's step
        # Saved in checkpoints, so that a run resumed mid-epoch logs the mean of the whole epoch.
        self.train_loss_epoch = MeanMetric(nan_strategy="disable")
        self.train_loss_epoch.persistent(True)
        self.restored_rng_states: dict | None = None

    def setup_val_bpd(self, images: int, T: int, generator: torch.Generator) -> None:
        """Fix the t and the noise of `val/bpd`: column 0 is L_0 (t = 0), the others one t from each of k strata
        of {1..T−1} as wide as a geometric progression from 1 to T makes them (t = 1 alone, then 2..3, 4..7, …),
        weighted by its stratum's width: unbiased, and exact where the terms are large and change fastest (the
        first, which uniform strata of ~T/k would hit rarely and weight by T/k). Buffers, not saved (they follow
        from the seed)."""
        for key, rule in (("images", rules.BPD_IMAGES), ("timesteps", rules.BPD_TIMESTEPS),
                          ("every_n_epochs", rules.EVERY_N_EPOCHS)):
            rule.check(f"module.val_bpd.{key}", self.val_bpd[key])
        self.bpd_images = images if T > 1 else 0
        edges = torch.logspace(0, math.log10(max(T, 2)), self.val_bpd["timesteps"] + 1, dtype=torch.float64)
        edges = torch.unique(torch.cat([torch.tensor([1, T]), edges.round().long().clamp(1, T)]))
        widths = edges.diff()
        strata = edges[:-1] + (torch.rand(images, len(widths), generator=generator, dtype=torch.float64)
                               * widths).long()
        self.register_buffer("bpd_t", torch.cat([torch.zeros(images, 1, dtype=torch.long), strata], 1),
                             persistent=False)
        self.register_buffer("bpd_noise", torch.randn(images, len(widths) + 1, *self.image_shape, generator=generator),
                             persistent=False)
        self.register_buffer("bpd_weights", torch.cat([torch.ones(1), widths.float()]), persistent=False)
        self.val_bpds: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        if self.compile_net and stage == "fit":
            self.net.compile()  # in place: training, validation and sampling call the compiled forward

    def training_step(self, batch, batch_idx):
        x0 = to_model_space(batch[0])
        t, weights, noise, keep_label = self.training_noise(len(x0), batch_idx)
        labels = None  # label dropout: the null class for a share p_uncond, for classifier-free guidance
        if keep_label is not None:
            labels = torch.where(keep_label, batch[1], torch.full_like(batch[1], self.num_classes))
        losses = self.diffusion.per_sample_loss(self.net, x0, t, noise, labels)
        if self.timestep_sampler.importance:  # every process learns the whole global batch's losses, in order
            self.timestep_sampler.update(self.global_batch(t), self.global_batch(losses.detach()))
        loss = (weights * losses).mean()
        on_host = self.device.type in self.host_devices
        self.watch_finite(loss, on_host)
        # Averaged over the global batch: an all-reduce of one number, no wait for the host. Lightning reads
        # progress-bar values every step, which waits for an accelerator: there the bar shows the epoch's mean.
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=on_host, sync_dist=True)
        self.train_loss_epoch.update(loss.detach())
        self.log("train/loss_epoch", self.train_loss_epoch, on_step=False, on_epoch=True)
        if not on_host:
            self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False, sync_dist=True)
        return loss

    def global_batch(self, values: torch.Tensor) -> torch.Tensor:
        """This process's rows of the global batch gathered from every process, in the global batch's order."""
        world_size = self._trainer.world_size if self._trainer else 1
        return self.all_gather(values).flatten() if world_size > 1 else values

    def watch_finite(self, loss: torch.Tensor, on_host: bool) -> None:
        """On the host, stop now if `loss` is not finite; elsewhere, remember the first such step on the device
        (no wait), for `check_finite` at the next checkpoint or validation."""
        if on_host and not torch.isfinite(loss):
            self.stop_non_finite(self.global_step, f"={loss.item()}")
        elif not on_host:
            bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
            self.first_bad_step = torch.where(bad, self.global_step, self.first_bad_step)

    def stop_non_finite(self, step: int, value: str = " is not finite") -> None:
        """Stop training with a TrainingError that says where the loss stopped being finite."""
        folder = getattr(self._trainer and self._trainer.checkpoint_callback, "dirpath", None)
        kept = f"; the checkpoints in {folder} are from earlier steps and stay as they were" if folder else ""
        raise TrainingError(f"train/loss{value} in the batch after optimizer step {step} (epoch "
                            f"{self.current_epoch}): training stopped before that update{kept}. Try a lower "
                            "optimizer.lr or a smaller trainer.gradient_clip_val")

    def check_finite(self) -> None:
        """On devices that defer the check: stop if any loss since the last check was not finite."""
        step = int(self.first_bad_step)
        if step >= 0:
            self.stop_non_finite(step)

    def training_noise(self, batch_size: int, batch_idx: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """t and its loss weight from the timestep sampler, ε ~ N(0, I) and, for a class-conditional net, which
        labels to keep (each with probability 1 − p_uncond; None otherwise) for this process's share of the
        global batch.

        They are drawn for the whole global batch from a stream fixed by (seed, epoch, batch), and each rank
        keeps the rows of its share of the data (`IndexBatches`): training under N processes is the training
        of one process with the global batch, and a resumed run draws what the original would have.
        """
        trainer = self._trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        generator = seeded_generator(self.seed, TRAIN_NOISE, self.current_epoch, batch_idx, device=self.device)
        n = batch_size * world_size
        t, weights = self.timestep_sampler.sample(n, self.device, generator)
        noise = torch.randn((n, *self.image_shape), generator=generator, device=self.device)
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        if not self.num_classes:
            return t[mine], weights[mine], noise[mine], None
        keep_label = torch.rand(n, generator=generator, device=self.device) >= self.p_uncond
        return t[mine], weights[mine], noise[mine], keep_label[mine]

    def lr_factor(self, step: int) -> float:
        """The learning rate's factor at optimizer `step` (`lr_factor`), the budget read from the trainer."""
        progress = budget_spent(step, *self.budget) if self.budget else 0.0
        return lr_factor(step, self.warmup_steps, self.lr_schedule, progress)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Never write weights that a non-finite loss has touched; store the config's fingerprint (see
        checkpoints.py) and the global random states (dropout draws from them)."""
        self.check_finite()
        if "module" in self.hparams:
            checkpoint["fingerprint"] = fingerprint(self.hparams["module"])
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restored_rng_states = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        if self.restored_rng_states is not None:  # a resumed run: go on with the random states of its checkpoint
            set_rng_states(self.restored_rng_states)
            self.restored_rng_states = None

    def on_validation_epoch_start(self) -> None:
        self.check_finite()
        self.val_losses = torch.full((len(self.val_t),), -1.0, device=self.device)  # −1: not evaluated
        due = self.bpd_images and self.current_epoch % self.val_bpd["every_n_epochs"] == 0
        self.val_bpds = torch.full((self.bpd_images,), -1.0, device=self.device) if due else None

    def validation_step(self, batch, batch_idx):
        images, labels, index = batch
        x0 = to_model_space(images)
        self.val_losses[index] = self.diffusion.per_sample_loss(
            self.net, x0, self.val_t[index], self.val_noise[index], labels if self.num_classes else None,
        )
        rows = index < self.bpd_images
        if self.val_bpds is not None and rows.any():
            self.val_bpds[index[rows]] = self.bits_per_dim(x0[rows], index[rows])

    def bits_per_dim(self, x0: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """`val/bpd`'s estimate of the bound of test images `index` (x0 in model space), one column of t at a time."""
        terms = []
        for column in range(self.bpd_t.shape[1]):
            t, noise = self.bpd_t[index, column], self.bpd_noise[index, column]
            xt = self.diffusion.q_sample(x0, t, noise)
            terms.append(self.diffusion.vlb_terms(self.net(xt, t), x0, xt, t, clip_denoised=True))
        return self.diffusion.prior_bits_per_dim(x0) + torch.stack(terms, 1) @ self.bpd_weights

    def gathered(self, per_image: torch.Tensor) -> torch.Tensor:
        """Per-test-image values (−1: not evaluated here) from every process, one per image: a padded duplicate has
        the same value on both ranks, so the max over ranks keeps each image once."""
        values = self.all_gather(per_image)
        return values.amax(0) if values.dim() == 2 else values

    def on_validation_epoch_end(self) -> None:
        losses = self.gathered(self.val_losses)
        seen = losses >= 0
        self.log("val/loss", losses[seen].mean(), sync_dist=True)
        for k in range(VAL_BUCKETS):
            bucket = seen & (self.val_bucket == k)
            if bucket.any():
                self.log(f"val/loss_t{k}", losses[bucket].mean(), sync_dist=True)
        if self.val_bpds is not None:
            bpds = self.gathered(self.val_bpds)
            if (bpds >= 0).any():
                self.log("val/bpd", bpds[bpds >= 0].mean(), sync_dist=True)
        self.last_validated_step = self.global_step

    def denoiser(self, labels: torch.Tensor | None = None, guidance_scale: float = 0.0) -> Denoiser:
        """The network as samplers see it: ε(x_t, t) for `labels`, with classifier-free guidance."""
        return Denoiser(self.net, self.diffusion, labels, guidance_scale)

    def sample(
        self, noise: torch.Tensor, generator: Noise = None, sampler: Sampler | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images in [-1, 1] from `noise` (x at the sampler's first timestep), of class `labels` for a
        class-conditional net (none: the null class); full-T ancestral DDPM by default."""
        sampler = sampler or DDPMSampler(self.diffusion)
        with eval_mode(self):
            return sampler.sample(self.denoiser(labels), noise, generator).clamp(-1, 1)

    def configure_optimizers(self):
        # The budget, read once per fit rather than at every step: (the steps allowed, Lightning's Timer or None).
        trainer = self._trainer
        self.budget = None if self.lr_schedule == "constant" or trainer is None else (
            trainer.estimated_stepping_batches, next((c for c in trainer.callbacks if isinstance(c, Timer)), None))
        optimizer = self.optimizer_factory(params=self.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
