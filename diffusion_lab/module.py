"""The LightningModule: ε-prediction training, a fixed validation loss, and sampling from the trained model."""

from collections.abc import Callable
from functools import partial

import pytorch_lightning as pl
import torch
from torch import nn

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.rng import TRAIN_NOISE, seeded_generator
from diffusion_lab.sampling import DDPMSampler, Sampler

VAL_BUCKETS = 10


def linear_warmup(step: int, warmup_steps: int) -> float:
    """Learning-rate factor rising linearly from 1/warmup_steps to 1 over the first warmup_steps steps."""
    return min(1.0, (step + 1) / max(1, warmup_steps))


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0..255} to floats in [-1, 1]."""
    return images.float() / 127.5 - 1


class DiffusionModule(pl.LightningModule):
    """Trains `net` to predict ε under `diffusion`.

    `channels_last` stores the network's weights in NHWC, so that its convolutions run in that layout;
    `compile` compiles its forward with torch.compile when fitting starts.

    Validation is deterministic: test image i always gets the same t and noise, with t stratified
    over {0..T−1}, so `val/loss` and its ten t-buckets `val/loss_t{k}` (t/T in [k/10, (k+1)/10))
    are comparable across epochs and runs with the same seed.
    """

    step_loss_on_bar = ("cpu",)  # device types whose progress bar shows every step's loss

    def __init__(
        self,
        net: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer],
        warmup_steps: int = 500,
        image_size: int = 28,
        channels: int = 1,
        val_size: int = 2000,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.compile_net = compile
        self.diffusion = diffusion
        self.optimizer_factory = optimizer
        self.warmup_steps = warmup_steps
        self.seed = seed
        self.image_shape = (channels, image_size, image_size)
        T = diffusion.num_timesteps
        generator = torch.Generator().manual_seed(seed)
        val_t = (torch.arange(val_size) * T // val_size)[torch.randperm(val_size, generator=generator)]
        self.register_buffer("val_t", val_t, persistent=False)
        self.register_buffer("val_noise", torch.randn(val_size, *self.image_shape, generator=generator), persistent=False)
        self.register_buffer("val_bucket", val_t * VAL_BUCKETS // T, persistent=False)
        self.val_losses: torch.Tensor | None = None
        self.last_validated_step = -1

    def setup(self, stage: str) -> None:
        if self.compile_net and stage == "fit":
            self.net.compile()  # in place: training, validation and sampling call the compiled forward

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t)

    def training_step(self, batch, batch_idx):
        x0 = to_model_space(batch[0])
        t, noise = self.training_noise(len(x0), batch_idx)
        loss = self.diffusion.per_sample_loss(self.net, x0, t, noise).mean()
        # Averaged over the global batch: an all-reduce of one number, no wait for the host. Lightning reads
        # progress-bar values every step, which waits for an accelerator: there the bar shows the epoch's mean.
        on_bar = self.device.type in self.step_loss_on_bar
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=on_bar, sync_dist=True)
        if not on_bar:
            self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False, sync_dist=True)
        return loss

    def training_noise(self, batch_size: int, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t ~ Uniform{0..T−1} and ε ~ N(0, I) for this process's share of the global batch.

        They are drawn for the whole global batch from a stream fixed by (seed, epoch, batch), and each rank
        keeps the rows of its share of the data (`IndexBatches`): training under N processes is the training
        of one process with the global batch, and a resumed run draws what the original would have.
        """
        trainer = self._trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        generator = seeded_generator(self.seed, TRAIN_NOISE, self.current_epoch, batch_idx, device=self.device)
        n = batch_size * world_size
        t = self.diffusion.sample_timesteps(n, self.device, generator)
        noise = torch.randn((n, *self.image_shape), generator=generator, device=self.device)
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        return t[mine], noise[mine]

    def on_validation_epoch_start(self) -> None:
        self.val_losses = torch.full((len(self.val_t),), -1.0, device=self.device)  # −1: not evaluated

    def validation_step(self, batch, batch_idx):
        images, _, index = batch
        self.val_losses[index] = self.diffusion.per_sample_loss(
            self.net, to_model_space(images), self.val_t[index], self.val_noise[index]
        )

    def on_validation_epoch_end(self) -> None:
        losses = self.all_gather(self.val_losses)
        if losses.dim() == 2:  # (world, n): a padded duplicate has the same loss on both ranks, so max dedups
            losses = losses.amax(0)
        seen = losses >= 0
        self.log("val/loss", losses[seen].mean(), sync_dist=True)
        for k in range(VAL_BUCKETS):
            bucket = seen & (self.val_bucket == k)
            if bucket.any():
                self.log(f"val/loss_t{k}", losses[bucket].mean(), sync_dist=True)
        self.last_validated_step = self.global_step

    def sample(
        self, noise: torch.Tensor, generator: torch.Generator | None = None, sampler: Sampler | None = None
    ) -> torch.Tensor:
        """Images in [-1, 1] from `noise` (x at the sampler's first timestep); full-T ancestral DDPM by default."""
        sampler = sampler or DDPMSampler(self.diffusion)
        was_training = self.training
        self.eval()
        try:
            return sampler.sample(self.net, noise, generator).clamp(-1, 1)
        finally:
            self.train(was_training)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(linear_warmup, warmup_steps=self.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
