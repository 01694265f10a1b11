"""Images as the package passes them around: uint8 pixels and model space [-1, 1], the class asked of each
image, and grids (one row per class, or near square)."""

import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from diffusion_lab.errors import ConfigError
from diffusion_lab.files import write_atomic


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0..255} to floats in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Floats in model space, clipped to [-1, 1], to uint8 pixels in {0..255}."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def requested_classes(cls: int | None, num_classes: int | None, n: int) -> torch.Tensor | None:
    """The class of each of n images: all `cls`, or i % num_classes for a conditional model (a class grid);
    None for an unconditional model."""
    if not num_classes:
        if cls is not None:
            raise ConfigError(f"class={cls}: this run is unconditional; allowed: class=null (or a run trained "
                              "with model.num_classes=10)")
        return None
    if cls is not None and not 0 <= cls < num_classes:
        raise ConfigError(f"class={cls}: allowed values are 0..{num_classes - 1} or null")
    return torch.full((n,), cls) if cls is not None else torch.arange(n) % num_classes


def class_rows(images: torch.Tensor, labels: torch.Tensor, blank: float) -> tuple[torch.Tensor, int]:
    """`images` reordered into one row per class, in class order, each row filled up to the longest with `blank`
    images; and that row length (make_grid's nrow)."""
    labels = labels.to(images.device)
    classes = labels.unique()
    per_class = max(int((labels == c).sum()) for c in classes)
    rows = []
    for c in classes:
        row = images[labels == c]
        rows += [row, row.new_full((per_class - len(row), *row.shape[1:]), blank)]
    return torch.cat(rows), per_class


def grid_layout(images: torch.Tensor, labels: torch.Tensor | None, blank: float) -> tuple[torch.Tensor, int]:
    """`images` in grid order and the grid's row length: one row per class (`class_rows`) when `labels` name
    more than one class, else a near-square grid."""
    if labels is not None and len(labels.unique()) > 1:
        return class_rows(images, labels, blank)
    return images, math.ceil(math.sqrt(len(images)))


def save_grid(images: torch.Tensor, labels: torch.Tensor | None, path: Path, most: int = 256) -> None:
    """The first `most` uint8 images as a PNG: one row per class for a class grid (labels i % C), else a square."""
    images, nrow = grid_layout(images[:most], labels[:most] if labels is not None else None, blank=255)
    write_atomic(path, lambda f: save_image(images.float() / 255, f, format="png", nrow=nrow, padding=2, pad_value=1.0),
                 binary=True)
