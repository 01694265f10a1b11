"""Callbacks that observe training: EMA weights, the sampling time budget, checkpoints, sample grids, sample quality, figures, the run
summary."""

from diffusion_lab.callbacks.budget import TimeBudget
from diffusion_lab.callbacks.checkpointing import AtomicCheckpointIO, Checkpoints
from diffusion_lab.callbacks.ema import EMA
from diffusion_lab.callbacks.figures import Figures
from diffusion_lab.callbacks.quality import SampleQuality
from diffusion_lab.callbacks.run_summary import RunSummary
from diffusion_lab.callbacks.sample_grid import SampleGrid

__all__ = ["AtomicCheckpointIO", "Checkpoints", "EMA", "Figures", "RunSummary", "SampleGrid", "SampleQuality",
           "TimeBudget"]
