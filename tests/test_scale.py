"""Speed and scale: DDP trains exactly as one process with the global batch, and the hot loop never waits."""

import collections
import csv

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import run_cli
from diffusion_lab.callbacks import EMA
from diffusion_lab.data import DiffusionDataModule
from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
from diffusion_lab.models import UNet
from diffusion_lab.module import DiffusionModule

SHORT_RUN = ["model=unet_tiny", "T=50", "dataset.val_size=37", "trainer.max_steps=4", "trainer.log_every_n_steps=1",
             "trainer.num_sanity_val_steps=0", "logger=csv", "~callbacks.quality", "~callbacks.figures",
             "sampling.n_images=4", "sampling.steps=[5]"]


def train_run(tmp_path, tiny_data, name: str, *overrides: str):
    result = run_cli("train.py", *SHORT_RUN, *overrides, f"paths.log_dir={tmp_path / name}", data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / name).glob("*/*/.hydra")]
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss_step"]) for r in rows if r["train/loss_step"]]
    (val_loss,) = [float(r["val/loss"]) for r in rows if r["val/loss"]]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return run, losses, val_loss, ckpt["current_model_state"]


def grid_tiles(path, n: int = 4, size: int = 28, pad: int = 2) -> np.ndarray:
    """The n images of a torchvision grid with ceil(sqrt(n)) columns."""
    pixels, cols = np.asarray(Image.open(path).convert("L")), int(np.ceil(np.sqrt(n)))
    step = size + pad
    return np.stack([pixels[pad + (k // cols) * step:][:size, pad + (k % cols) * step:][:, :size] for k in range(n)])


# T = 4 with loss=vlb: the importance sampler is warm after 40 samples, so steps 3 and 4 draw t from the loss
# history, which each rank must keep for the whole global batch to draw what one process draws.
IMPORTANCE = ("schedule=cosine", "T=4", "sampling.steps=[4]", "model.learn_sigma=true", "loss=vlb")


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), IMPORTANCE], ids=["uniform_t", "importance_sampled_t"])
def test_ddp_trains_exactly_as_one_process_with_the_global_batch(tiny_data, tmp_path, extra):
    _, single, single_val, single_weights = train_run(tmp_path, tiny_data, "single", "trainer=cpu",
                                                      "dataset.batch_size=16", *extra)
    run, ddp, ddp_val, ddp_weights = train_run(tmp_path, tiny_data, "ddp", "trainer=ddp", "trainer.accelerator=cpu",
                                               "trainer.devices=2", "dataset.batch_size=8", *extra)
    # Same global batches, same (t, ε) per image, gradients averaged over the same 16 images: only the order of
    # float additions differs. Tolerance: 1e-5 relative on the loss of each of the 4 steps, 1e-6 on the weights.
    assert len(single) == len(ddp) == 4
    np.testing.assert_allclose(ddp, single, rtol=1e-5)
    for name, weight in single_weights.items():
        if name.startswith("net."):  # not the epoch-mean metric's state, which each rank keeps for its share
            torch.testing.assert_close(ddp_weights[name], weight, rtol=0, atol=1e-6)
    if extra:
        assert single_weights["timestep_sampler.loss_counts"].tolist() == [10] * 4
        torch.testing.assert_close(ddp_weights["timestep_sampler.loss_history"],
                                   single_weights["timestep_sampler.loss_history"], rtol=1e-5, atol=1e-7)
    # The 37 validation images are split 19/18 without padding, so the gathered mean is the same mean.
    assert ddp_val == pytest.approx(single_val, rel=1e-6)
    # The final grid gathers 2 images from each rank, each from its own noise stream: all 4 differ.
    tiles = grid_tiles(run / "samples" / f"final_ddim-{4 if extra else 5}.png")
    assert len(np.unique(tiles.reshape(4, -1), axis=0)) == 4


class HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value by the host (`.item()`, `bool(t)`, …): on an accelerator, each waits for
    all queued work."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


class HostReadsPerBatch(pl.Callback):
    """Host reads from the start of each training batch to the start of the next (all hooks included)."""

    def __init__(self):
        self.mode, self.counts = None, []

    def _close(self):
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.counts.append(self.mode.count)
            self.mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._close()
        self.mode = HostReads()
        self.mode.__enter__()

    def on_train_epoch_end(self, trainer, pl_module):
        self._close()


def test_training_steps_never_read_device_values_between_logging_steps(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(DiffusionModule, "host_devices", ())  # the bar of an accelerator: epoch means only
    net = UNet(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=())
    module = DiffusionModule(net, GaussianDiffusion(linear_betas(50)), val_size=16, channels_last=True,
                             optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True))
    counter = HostReadsPerBatch()
    trainer = pl.Trainer(max_steps=9, log_every_n_steps=4, limit_val_batches=0, gradient_clip_val=1.0,
                         logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
                         callbacks=[counter, EMA(0.999)])
    trainer.fit(module, DiffusionDataModule(data_dir=str(tiny_data), batch_size=16, val_size=16, download=False))
    per_batch = collections.Counter({i: c for i, c in enumerate(counter.counts) if c})
    # Batch 0: the EMA reads its update count once per fit; batches 3 and 7 end logging steps (every 4).
    assert len(counter.counts) == 9 and set(per_batch) <= {0, 3, 7} and per_batch[0] <= 1, counter.counts


def test_speed_settings_reach_the_network(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg("trainer=gpu", "model=unet_tiny")  # speed follows trainer: gpu compiles, in bf16-mixed
    assert cfg.trainer.precision == "bf16-mixed" and cfg.speed.compile and cfg.optimizer.fused
    module = instantiate(cfg.module)
    convs = [m.weight for m in module.net.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1
             and m.kernel_size == (3, 3)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    assert module.net._compiled_call_impl is None
    module.setup("fit")  # torch.compile is lazy: this wraps the forward, the first call compiles it
    assert module.net._compiled_call_impl is not None
    cpu = instantiate(compose_cfg("trainer=cpu", "model=unet_tiny", "speed.channels_last=false").module)
    cpu.setup("fit")
    assert cpu.net._compiled_call_impl is None and all(
        m.weight.is_contiguous() for m in cpu.net.modules() if isinstance(m, torch.nn.Conv2d))
