"""MNIST and Fashion-MNIST as in-memory uint8 tensors, read through torchvision; offline-aware."""

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import MNIST, FashionMNIST

from diffusion_lab.errors import ConfigError

DATASETS = {"mnist": MNIST, "fashion_mnist": FashionMNIST}


def dataset_class(name: str) -> type[MNIST]:
    if name not in DATASETS:
        raise ConfigError(f"dataset.name={name!r}: allowed values are {', '.join(DATASETS)}")
    return DATASETS[name]


def load_split(name: str, root: str | Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as uint8 of shape (N, 1, 28, 28), labels) of one split; downloads only when the files are missing."""
    cls = dataset_class(name)
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


class DiffusionDataModule(pl.LightningDataModule):
    """Training split for training; the first `val_size` test images, in order, for the fixed validation loss.

    Batches are (uint8 images, labels, indices); the module scales images to [-1, 1] on its device.
    `batch_size` is per process: under DDP the global batch is batch_size × world size.
    """

    def __init__(
        self,
        name: str = "mnist",
        data_dir: str = "./data",
        batch_size: int = 128,
        val_size: int = 2000,
        num_workers: int = 0,
        download: bool = True,
        image_size: int = 28,
        channels: int = 1,
    ):
        super().__init__()
        dataset_class(name)
        if batch_size < 1:
            raise ConfigError(f"dataset.batch_size={batch_size}: must be an integer >= 1")
        self.name, self.data_dir, self.download = name, data_dir, download
        self.batch_size, self.val_size, self.num_workers = batch_size, val_size, num_workers
        self.train_set = self.val_set = None

    def prepare_data(self) -> None:
        for train in (True, False):
            load_split(self.name, self.data_dir, train, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_split(self.name, self.data_dir, train=True, download=False)
        self.train_set = TensorDataset(images, labels, torch.arange(len(labels)))
        images, labels = load_split(self.name, self.data_dir, train=False, download=False)
        if not 1 <= self.val_size <= len(labels):
            raise ConfigError(f"dataset.val_size={self.val_size}: allowed values are 1..{len(labels)}")
        n = self.val_size
        self.val_set = TensorDataset(images[:n], labels[:n], torch.arange(n))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
