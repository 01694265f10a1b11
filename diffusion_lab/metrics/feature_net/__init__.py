"""The feature space in which sample quality is measured: a small CNN classifier trained per data set.

Inception-v3 features (FID's usual space) suit neither 28×28 grayscale images nor an offline machine, so, as
is common for MNIST-like data, quality is measured with the penultimate layer of a classifier trained on the
data set itself. It is trained once (minutes on a CPU) and cached with a fingerprint of its settings; its training draws from
random streams of its own, so whether the cache exists changes nothing else in the process.

    python -m diffusion_lab.metrics.feature_net dataset=fashion_mnist [epochs=8] [data_dir=...] [cache_dir=...]
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from diffusion_lab.cost import duration
from diffusion_lab.data import load_split
from diffusion_lab.files import write_atomic
from diffusion_lab.images import to_model_space

log = logging.getLogger(__name__)

MIN_ACCURACY = {"mnist": 0.99, "fashion_mnist": 0.91}
ANNOUNCE_AFTER = 20  # batches timed before the expected training time is logged
DEFAULTS = {"mnist": {"epochs": 3}, "fashion_mnist": {"epochs": 8, "flip": True}}  # reach MIN_ACCURACY


class FeatureNet(nn.Module):
    """Three conv-BatchNorm-ReLU-pool blocks, then a `num_features`-wide hidden layer (the features) and the
    class logits.

    Takes uint8 images in {0..255} (torchmetrics' convention) or floats in [-1, 1].
    """

    def __init__(self, num_features: int = 128, num_classes: int = 10):
        super().__init__()
        self.num_features = num_features

        def block(c_in, c_out):  # each block halves the resolution: 28 → 14 → 7 → 3
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.body = nn.Sequential(
            *block(1, 32), *block(32, 64), *block(64, 128),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(128 * 3 * 3, num_features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(num_features, num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = to_model_space(images) if images.dtype == torch.uint8 else images
        return self.body(x)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@dataclass(frozen=True)
class FeatureNetSettings:
    dataset: str
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    num_features: int = 128
    seed: int = 0
    flip: bool = False  # random horizontal flips (clothes, not digits)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir(data_dir: str | Path) -> Path:
    """`<data_dir>/diffusion_lab_cache` where that is writable, else `~/.cache/diffusion_lab`."""
    beside = Path(data_dir) / "diffusion_lab_cache"
    if os.access(beside if beside.exists() else Path(data_dir), os.W_OK):
        return beside
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion_lab"


@torch.no_grad()
def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = sum(int((net.logits(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def train_feature_net(settings: FeatureNetSettings, data_dir: str | Path,
                      device: torch.device | str = "cpu") -> tuple[FeatureNet, float]:
    """Train on the training split with AdamW and a one-cycle schedule; returns the net (on the CPU) and its
    test accuracy. Every draw (initial weights, order, shifts, flips, dropout) comes from the process's random
    streams forked and seeded with `settings.seed`, which are put back as they were afterwards."""
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        return _train(settings, data_dir, device)


def _train(settings: FeatureNetSettings, data_dir: str | Path, device) -> tuple[FeatureNet, float]:
    images, labels = (t.to(device) for t in load_split(settings.dataset, data_dir, train=True, download=False))
    test_images, test_labels = (t.to(device) for t in load_split(settings.dataset, data_dir, train=False,
                                                                 download=False))
    net = FeatureNet(settings.num_features).to(device)
    steps_per_epoch = len(images) // settings.batch_size
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=settings.epochs * steps_per_epoch)
    bar = tqdm(total=settings.epochs * steps_per_epoch, desc=f"feature net {settings.dataset}", unit="batch",
               leave=False)
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        net.train()
        order = torch.randperm(len(images)).to(device)
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            x = images[batch]
            shift = torch.randint(-2, 3, (2,)).tolist()  # small random translations
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            if settings.flip:
                x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x.flip(3), x)
            loss = F.cross_entropy(net.logits(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            if bar.n == ANNOUNCE_AFTER:
                per_batch = (time.perf_counter() - start) / bar.n
                log.info("feature net %s: %d epochs of %d batches, about %s (%.3g s per batch, measured)",
                         settings.dataset, settings.epochs, steps_per_epoch, duration(per_batch * bar.total),
                         per_batch)
        test_accuracy = accuracy(net, test_images, test_labels)
        log.info("feature net %s: epoch %d/%d, loss %.4f, test accuracy %.4f", settings.dataset, epoch + 1,
                 settings.epochs, loss.item(), test_accuracy)
    bar.close()
    return net.cpu().eval(), test_accuracy


def cache_dir_for(data_dir: str | Path, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir(data_dir)


def load_feature_net(dataset: str, data_dir: str | Path, cache_dir: str | Path | None = None,
                     device: torch.device | str = "cpu", **settings) -> tuple[FeatureNet, dict]:
    """The cached feature net for `dataset` and these settings, trained (on `device`) and cached first when
    missing. Returns (net on the CPU in eval mode, its record: settings, fingerprint and test accuracy)."""
    settings = DEFAULTS.get(dataset, {}) | {k: v for k, v in settings.items() if v is not None}
    config = FeatureNetSettings(dataset, **settings)
    path = cache_dir_for(data_dir, cache_dir) / f"feature_net-{dataset}-{config.fingerprint()}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        with torch.device("meta"):  # no initial weights drawn: they would take numbers from the global streams
            net = FeatureNet(config.num_features)
        net.load_state_dict(saved["state_dict"], assign=True)
        return net.eval(), saved["record"]
    log.info("training the %s feature net (cached at %s)", dataset, path)
    net, test_accuracy = train_feature_net(config, data_dir, device)
    record = {"settings": asdict(config), "fingerprint": config.fingerprint(), "test_accuracy": test_accuracy}
    if test_accuracy < MIN_ACCURACY.get(dataset, 0):
        log.warning("feature net %s: test accuracy %.4f is below %.2f", dataset, test_accuracy, MIN_ACCURACY[dataset])
    write_atomic(path, lambda f: torch.save({"state_dict": net.state_dict(), "record": record}, f), binary=True)
    return net, record


@torch.no_grad()
def real_features(net: FeatureNet, record: dict, data_dir: str | Path, n: int,
                  cache_dir: str | Path | None = None) -> torch.Tensor:
    """Features of the first `n` test images (the real statistics every sample set is compared with), cached
    beside the net as `real_features-<dataset>-<fingerprint>-n<n>.pt`."""
    dataset = record["settings"]["dataset"]
    path = cache_dir_for(data_dir, cache_dir) / f"real_features-{dataset}-{record['fingerprint']}-n{n}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    images, _ = load_split(dataset, data_dir, train=False, download=False)
    features = torch.cat([net.eval().features(b) for b in images[:n].split(1000)])
    write_atomic(path, lambda f: torch.save(features, f), binary=True)
    return features
