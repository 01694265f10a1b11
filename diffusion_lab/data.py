"""MNIST and Fashion-MNIST as in-memory uint8 tensors, read through torchvision; offline-aware."""

import math
import struct
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets import MNIST, FashionMNIST

from diffusion_lab import rules
from diffusion_lab.errors import ConfigError
from diffusion_lab.rng import TRAIN_ORDER, seeded_generator

DATASETS = dict(zip(rules.DATASETS, (MNIST, FashionMNIST)))


def dataset_class(name: str) -> type[MNIST]:
    rules.DATASET.check("dataset.name", name)
    return DATASETS[name]


IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST and Fashion-MNIST use
IMAGE_SIDE, NUM_CLASSES = 28, 10


def idx_shape(path: Path, dims: int) -> tuple[int, ...]:
    """The shape an uncompressed IDX file of unsigned bytes with `dims` dimensions declares, once its magic number
    and its length are checked against it; ConfigError naming the file and what is wrong otherwise."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 + 4 * dims)
    expected_magic = (IDX_UBYTE << 8) | dims
    if len(header) < 4 + 4 * dims:
        raise ConfigError(f"{path}: {size} bytes, too short for an IDX header; the file is truncated or not IDX "
                          "(delete it to download it again)")
    magic = struct.unpack(">I", header[:4])[0]
    if magic != expected_magic:
        raise ConfigError(f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (unsigned bytes, "
                          f"{dims} dimensions); not an uncompressed IDX file of this kind (delete it to download it "
                          "again)")
    shape = struct.unpack(f">{dims}I", header[4:])
    if size != len(header) + math.prod(shape):
        raise ConfigError(f"{path}: {size} bytes, but its header declares {'×'.join(map(str, shape))} values, "
                          f"{len(header) + math.prod(shape)} bytes; the file is truncated or corrupt (delete it to "
                          "download it again)")
    return shape


def check_raw_files(cls: type[MNIST], root: str | Path, train: bool) -> None:
    """The split's IDX files, where they exist, before torchvision reads them: images n × 28 × 28, as many labels,
    each a class 0–9. A bad file stops the run in one line naming it, never in a reshape traceback."""
    folder = Path(root) / cls.__name__ / "raw"
    prefix = "train" if train else "t10k"
    images, labels = folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
    if not (images.is_file() and labels.is_file()):
        return  # torchvision downloads them, or `_missing` says where to put them
    n, height, width = idx_shape(images, 3)
    if (height, width) != (IMAGE_SIDE, IMAGE_SIDE):
        raise ConfigError(f"{images}: images of {height}×{width} pixels; {cls.__name__} images are "
                          f"{IMAGE_SIDE}×{IMAGE_SIDE}")
    (n_labels,) = idx_shape(labels, 1)
    if n_labels != n:
        raise ConfigError(f"{labels}: {n_labels} labels for the {n} images of {images.name}; the two files do not "
                          "belong together")
    if max(labels.read_bytes()[8:], default=0) >= NUM_CLASSES:
        raise ConfigError(f"{labels}: a label above {NUM_CLASSES - 1}; the file is corrupt or not {cls.__name__}'s")


def load_split(name: str, root: str | Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as uint8 of shape (N, 1, 28, 28), labels) of one split, its files checked first; downloads only
    when the files are missing."""
    cls = dataset_class(name)
    check_raw_files(cls, root, train)
    try:
        data = cls(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise ConfigError(_missing(cls, root, "dataset.download=false")) from None
        try:
            data = cls(str(root), train=train, download=True)
        except (RuntimeError, OSError) as err:
            reason = str(err).strip().splitlines()[-1][:160]
            raise ConfigError(_missing(cls, root, f"the download failed: {reason}")) from None
    return data.data.unsqueeze(1), data.targets


def _missing(cls, root, why: str) -> str:
    folder = Path(root).resolve() / cls.__name__ / "raw"
    files = ", ".join(Path(url).stem for url, _ in cls.resources)
    return (
        f"paths.data_dir={str(root)!r}: no {cls.__name__} files in {folder} and {why}; put {files} there "
        "(uncompressed IDX), or set paths.data_dir / DIFFUSION_LAB_DATA to a folder holding them"
    )


class EpochOrder(Sampler[int]):
    """0..n−1 in the order of the current epoch: a permutation fixed by (seed, epoch) when shuffling, else as is.
    Lightning calls `set_epoch` on it (as `batch_sampler.sampler`) at the start of every epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=seeded_generator(self.seed, TRAIN_ORDER, self.epoch))

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.n


class IndexBatches(Sampler[torch.Tensor]):
    """Index batches for one process out of `world_size`: the global batch is the next `batch_size × world_size`
    entries of the epoch's order (`EpochOrder`), and rank r takes its r-th share of it. Under DDP the global
    batches are those of a single process with the global batch size, and every index appears exactly once per
    epoch: no padding, nothing duplicated. Training drops the last, incomplete global batch; evaluation splits
    it as evenly as it can.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.sampler = EpochOrder(n, shuffle, seed)
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rank, self.world_size = rank, world_size
        self.resume_epoch, self.resume_batch = -1, 0

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def resume_at(self, epoch: int, batch: int) -> None:
        """Start epoch `epoch` at its batch `batch` (a run resumed mid-epoch); other epochs start at 0."""
        self.resume_epoch, self.resume_batch = epoch, batch

    def __iter__(self):
        order = self.sampler.order()
        first = self.resume_batch * self.global_batch if self.epoch == self.resume_epoch else 0
        for start in range(first, len(self) * self.global_batch if self.shuffle else self.n, self.global_batch):
            share = order[start:start + self.global_batch].tensor_split(self.world_size)[self.rank]
            if len(share):
                yield share

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        if self.shuffle:
            return self.n // self.global_batch
        full, rest = divmod(self.n, self.global_batch)
        return full + (self.rank < rest)


class Indices(Dataset):
    """The data set of one split as its indices: a batch stays an index tensor until it reaches its device."""

    def __init__(self, split: str, n: int):
        self.split, self.n = split, n

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, index: torch.Tensor) -> tuple[str, torch.Tensor]:
        return self.split, index


def _as_is(batch):
    return batch


class ResumableLoader(DataLoader):
    """A DataLoader over `IndexBatches` whose position Lightning saves in checkpoints (its `state_dict`): a run
    resumed mid-epoch goes on with the next batch of the same epoch's order, as if it had never stopped.
    `batches_done()` is the number of batches of the current epoch that were trained."""

    def __init__(self, dataset: Dataset, batches: IndexBatches, batches_done: Callable[[], int], **kwargs):
        super().__init__(dataset, batch_sampler=batches, **kwargs)
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_done": self.batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume_at(state["epoch"], state["batches_done"])


class DiffusionDataModule(pl.LightningDataModule):
    """Training split for training; the first `val_size` test images, in order, for the fixed validation loss.

    Both splits are held as uint8 tensors, copied once to each device that asks for them; a batch travels as
    indices and is gathered there, so no image is touched one at a time. Batches are (uint8 images, labels,
    indices); the module scales images to [-1, 1]. `batch_size` is per process: under DDP the global batch
    is batch_size × world size (see `IndexBatches`). The seed fixes the order of every epoch.
    """

    def __init__(
        self,
        name: str = "mnist",
        data_dir: str = "./data",
        batch_size: int = 128,
        val_size: int = 2000,
        download: bool = True,
        image_size: int = 28,
        channels: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        dataset_class(name)
        rules.BATCH_SIZE.check("dataset.batch_size", batch_size)
        self.name, self.data_dir, self.download = name, data_dir, download
        self.batch_size, self.val_size, self.seed = batch_size, val_size, seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split -> (uint8 images, labels), on CPU
        self.on_device: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:
        for train in (True, False):
            load_split(self.name, self.data_dir, train, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits["train"] = load_split(self.name, self.data_dir, train=True, download=False)
        images, labels = load_split(self.name, self.data_dir, train=False, download=False)
        if not 1 <= self.val_size <= len(labels):
            raise ConfigError(f"dataset.val_size={self.val_size}: allowed values are 1..{len(labels)}")
        self.splits["val"] = images[: self.val_size], labels[: self.val_size]

    @property
    def val_images(self) -> torch.Tensor:
        return self.splits["val"][0]

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        n = len(self.splits[split][1])
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if shuffle and n < self.batch_size * world_size:
            raise ConfigError(f"dataset.batch_size={self.batch_size}: the global batch ({world_size} processes) "
                              f"exceeds the {n} training images")
        batches = IndexBatches(n, self.batch_size, shuffle, self.seed, rank, world_size)
        # Its own generator: a DataLoader draws a base seed whenever it starts an epoch, which would otherwise take
        # a number from the global stream (that dropout uses) and make it depend on how many epochs were started.
        options = dict(collate_fn=_as_is, pin_memory=torch.cuda.is_available(), generator=torch.Generator())
        if not shuffle:
            return DataLoader(Indices(split, n), batch_sampler=batches, **options)
        return ResumableLoader(Indices(split, n), batches, self._batches_done, **options)

    def _batches_done(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """(split, indices) -> (uint8 images, labels, indices) on `device`, gathered from the split's copy there."""
        split, index = batch
        key = (split, torch.device(device))
        if key not in self.on_device:
            self.on_device[key] = tuple(t.to(device) for t in self.splits[split])
        images, labels = self.on_device[key]
        index = index.to(device, non_blocking=True)
        return images[index], labels[index], index
