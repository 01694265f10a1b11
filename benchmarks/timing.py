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


def machine() -> dict:
    """The CPU model, its vector flags that matter to torch (AVX2, AVX-512, AMX), and torch's thread count:
    printed by every benchmark, since the same kind of machine has been CPUs twice as fast as each other."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name", "unknown"), "threads": torch.get_num_threads(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})}
