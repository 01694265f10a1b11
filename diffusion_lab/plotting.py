"""Matplotlib figures of a fixed size, drawn on the Agg canvas outside pyplot: a saved PNG is exactly
figsize × dpi pixels. Images are drawn from model space, [-1, 1]."""

import math
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from diffusion_lab.files import write_atomic

DPI = 100


def figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of fixed size on the Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def image_axes(rows: int, cols: int, panel: float, margin: float = 0.5):
    """A figure of rows × cols square image panels of `panel` inches, with `margin` inches for labels."""
    fig = figure(cols * panel + margin, rows * panel + margin)
    return fig, fig.subplots(rows, cols, squeeze=False)


def show(ax, images: torch.Tensor, title: str = "", ylabel: str = "", nrow: int | None = None) -> None:
    """Draw a batch (B, C, H, W) in [-1, 1] as one image (B = 1) or a grid, `nrow` images a row (default: near
    square), on white padding."""
    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow or math.ceil(math.sqrt(len(images))), padding=2,
                     pad_value=1)
    ax.imshow(grid.permute(1, 2, 0).float().cpu().numpy())  # make_grid repeats one channel as RGB
    ax.set(xticks=[], yticks=[], title=title, ylabel=ylabel)
    ax.spines[:].set_visible(False)


def error_bars(values: list[float], intervals: list) -> list[list[float]] | None:
    """matplotlib's `yerr` for values with [low, high] intervals (distances below and above, never negative: a
    basic bootstrap interval may lie below its estimate), or None unless every value has one."""
    if not all(intervals):
        return None
    return [[max(v - ci[0], 0) for v, ci in zip(values, intervals)], [max(ci[1] - v, 0) for v, ci in zip(values, intervals)]]


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG of exactly figsize × dpi pixels."""
    return write_atomic(path, lambda f: fig.savefig(f, dpi=fig.dpi, format="png"), binary=True)
