"""Drawing images from a trained denoiser, alone or split over several processes: each process's share, its
noise stream, and the batches."""

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from lightning_fabric import Fabric
from torch import nn

from diffusion_lab import interrupts
from diffusion_lab.diffusion import Denoiser
from diffusion_lab.images import to_pixels
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling import Sampler

log = logging.getLogger(__name__)


# Images per network call when sampling on a CPU: the fastest of 16 … 1,000 for the U-Nets of conf/model/
# (benchmarks/bench_sample.py --batches), where larger batches fall out of the caches. Elsewhere: GPU_BATCH.
CPU_BATCH = 64
GPU_BATCH = 1000


# Network evaluations (images × NFE) from which compiling pays for itself: torch.compile takes about a minute
# and then saves about a quarter of the eager time on a 2-core CPU (benchmarks/bench_sample.py), so from about
# four minutes of eager sampling. On a GPU the saving is unmeasured here: there it is the same minute against
# far faster evaluations.
COMPILE_MIN_EVALUATIONS = {"cpu": 150_000, "cuda": 5_000_000}


def sampling_batch_size(n: int, device, requested: int | str = "auto") -> int:
    """Images per network call for drawing n images on `device`: `requested`, or for `auto` the device's batch."""
    if requested != "auto":
        return int(requested)
    return max(1, min(n, CPU_BATCH if torch.device(device).type == "cpu" else GPU_BATCH))


def should_compile(requested: bool | str, evaluations: int, device) -> bool:
    """Whether to torch.compile the network for `evaluations` network evaluations on `device`: `requested`, or
    for `auto` whether they reach the device's COMPILE_MIN_EVALUATIONS."""
    if requested != "auto":
        return bool(requested)
    return evaluations >= COMPILE_MIN_EVALUATIONS.get(torch.device(device).type, float("inf"))


def prepare_sampling(net: nn.Module, n: int, evaluations: int, device, batch_size: int | str = "auto",
                     compile: bool | str = "auto") -> tuple[int, bool]:
    """(batch size, compiled) for drawing n images at `evaluations` network evaluations in all on `device`
    (`sampling_batch_size`, `should_compile`); compiles `net` in place when chosen, and says what it chose."""
    batch, compiled = sampling_batch_size(n, device, batch_size), should_compile(compile, evaluations, device)
    if compiled:
        net.compile()
    why = f" ({evaluations:,} network evaluations; the threshold is {COMPILE_MIN_EVALUATIONS.get(torch.device(device).type)})"
    log.info("sampling in batches of %d, %s%s", batch, "compiled" if compiled else "not compiled",
             why if compile == "auto" else "")
    return batch, compiled


@dataclass(frozen=True)
class Share:
    """Process `rank`'s part of `n` images drawn by `world_size` processes: ⌈n / world_size⌉ each, global image
    rank·per_rank + i being its image i. Gathered rank by rank, the first n are kept, so none counts twice."""

    n: int
    rank: int = 0
    world_size: int = 1

    @property
    def per_rank(self) -> int:
        return math.ceil(self.n / self.world_size)

    @property
    def first(self) -> int:
        """The global index of this process's first image."""
        return self.rank * self.per_rank

    @property
    def total(self) -> int:
        """Images drawn by all processes together (n, or a few more)."""
        return self.per_rank * self.world_size

    def mine(self, per_image: torch.Tensor | None, device=None) -> torch.Tensor | None:
        """This process's rows of a tensor of `total` rows (a class per image, say), on `device`."""
        return None if per_image is None else per_image[self.first:][:self.per_rank].to(device)

    def gather(self, x: torch.Tensor, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Every process's `x` in rank order, cut to exactly n rows."""
        if self.world_size > 1:
            x = all_gather(x).reshape(-1, *x.shape[1:])
        return x[: self.n]


def launch(accelerator: str, devices) -> Fabric:
    """A launched Lightning Fabric on `devices` (DDP when there are several): the processes that share a command's
    sampling."""
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp" if devices not in (1, "1") else "auto")
    fabric.launch()
    return fabric


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode (dropout off) inside the block, in the mode it was in afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def generate(denoiser: Denoiser, sampler: Sampler, n: int, image_shape, seed: int, batch_size: int, device,
             progress: bool = False, labels: torch.Tensor | None = None, first: int = 0,
             on_batch: Callable[[int], None] | None = None, full_batches: bool = False) -> torch.Tensor:
    """Images first … first + n − 1 as uint8 (n, C, H, W), drawn in batches; image i from its own noise stream
    (`ImageNoise`, keyed by seed and i), so it does not depend on the batch size or on which process draws it,
    and of class `labels[i − first]` when given. `on_batch(b)` is told of each batch of b images drawn.
    `full_batches` draws the last batch at full size too, keeping only its first images: a compiled network
    then never meets a new shape (which would compile it again). A stop signal ends it before the next batch
    (`interrupts.Interrupted`)."""
    batches = []
    for start in range(0, n, batch_size):
        interrupts.check("sampling")
        b = min(batch_size, n - start)
        drawn = batch_size if full_batches else b
        noise = ImageNoise(seed, range(first + start, first + start + drawn), device)
        model = denoiser if labels is None else denoiser.for_labels(labels[start:start + b].repeat(
            math.ceil(drawn / b))[:drawn])
        batches.append(to_pixels(sampler.sample(model, noise.randn(image_shape), noise, progress=progress))[:b])
        if on_batch is not None:
            on_batch(b)
    return torch.cat(batches)
