"""Timing shared by the benchmarks: images per second of a callable, and interleaved side-by-side rounds."""

import statistics
import time

import torch


def images_per_second(step, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def compare(ours, theirs, batch: int, steps: int, rounds: int) -> tuple[float, float]:
    """Median images/s of `ours` and `theirs` over `rounds` interleaved rounds of `steps` calls each, so that
    drifts of a noisy machine hit both alike."""
    measured = [(images_per_second(ours, batch, steps), images_per_second(theirs, batch, steps))
                for _ in range(rounds)]
    return statistics.median(m[0] for m in measured), statistics.median(m[1] for m in measured)
