"""What drawing images costs: network evaluations per image (NFE), seconds per evaluation measured on this
machine, and how many images fit in a given time."""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from diffusion_lab.diffusion import Denoiser, GaussianDiffusion
from diffusion_lab.errors import ConfigError
from diffusion_lab.sampling import Sampler

log = logging.getLogger(__name__)


def nfe(sampler: Sampler, denoiser: Denoiser) -> int:
    """Network evaluations per image of one chain: the sampler's per-image evaluations, twice over under
    classifier-free guidance (the conditional and the unconditional half of one batched call)."""
    return sampler.network_evaluations * denoiser.evaluations_per_call


def steps_for_nfe(factory, diffusion: GaussianDiffusion, nfe: int, evaluations_per_call: int = 1,
                  key: str = "nfe") -> int:
    """The most steps (1..T) whose chain costs at most `nfe` network evaluations per image with the sampler that
    `factory(diffusion, steps=K)` builds (Heun: (nfe + 1) // 2; guidance counts each evaluation twice)."""
    def cost(K: int) -> int:
        return factory(diffusion, steps=K).network_evaluations * evaluations_per_call

    one_step = factory(diffusion, steps=1)
    least = one_step.network_evaluations * evaluations_per_call
    if least > nfe:
        raise ConfigError(f"{key}={nfe}: allowed values are integers >= {least} for {one_step.label}"
                          f"{' with guidance' if evaluations_per_call > 1 else ''} (its one step costs {least})")
    low, high = 1, diffusion.num_timesteps  # cost is nondecreasing in K: the largest K with cost(K) <= nfe
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if cost(middle) <= nfe else (low, middle - 1)
    return low


@torch.inference_mode()
def seconds_per_evaluation(denoiser: Denoiser, image_shape, device, batch_size: int = 64, repeats: int = 1) -> float:
    """The network's seconds per image evaluation at `batch_size`, timed over `repeats` calls after one warm-up
    (eval mode; the weights and the noise do not matter). A guided denoiser counts its two halves."""
    was_training = denoiser.net.training
    denoiser.net.eval()
    x = torch.zeros(batch_size, *image_shape, device=device)
    t = torch.full((batch_size,), denoiser.diffusion.num_timesteps // 2, device=device, dtype=torch.long)
    model = denoiser.for_labels(torch.zeros(batch_size, dtype=torch.long, device=device)) \
        if denoiser.evaluations_per_call > 1 else denoiser
    try:
        model(x, t)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x, t)
        synchronize(device)
    finally:
        denoiser.net.train(was_training)
    return (time.perf_counter() - start) / (repeats * batch_size * denoiser.evaluations_per_call)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def affordable(n: int, evaluations_per_image: int, seconds_per_eval: float, seconds: float | None,
               minimum: int = 1) -> int:
    """The most images, up to n, whose `evaluations_per_image` each fit in `seconds` (None: no limit), or 0 when
    fewer than `minimum` would."""
    if seconds is None:
        return n
    fits = int(seconds / max(evaluations_per_image * seconds_per_eval, 1e-12))
    return min(n, fits) if fits >= minimum else 0


def plan(n: int, costs: list[int], seconds_per_eval: float, seconds: float | None,
         minimum: int) -> tuple[int, list[int]]:
    """(images per setting, the indices of the settings kept) that fit `seconds` (None: all of them) when setting
    i costs `costs[i]` network evaluations per image: fewer images first, down to `minimum`, then the costliest
    settings left out one by one; (0, []) when not even the cheapest fits."""
    kept = list(range(len(costs)))
    while kept:
        fitting = affordable(n, sum(costs[i] for i in kept), seconds_per_eval, seconds, minimum)
        if fitting:
            return fitting, kept
        kept.remove(max(kept, key=lambda i: costs[i]))
    return 0, []


def duration(seconds: float) -> str:
    """`42 s`, `3.5 min` or `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@contextmanager
def announced(title: str, evaluations: int, seconds_per_eval: float, note: str = "",
              enabled: bool = True) -> Iterator[tqdm]:
    """Log what a phase will do and how long it should take (from the measured seconds per evaluation), show
    a progress bar in network evaluations while it runs (update it as evaluations finish), log what it took."""
    if enabled:
        log.info("%s: %s network evaluations, about %s at %.3g ms each (measured)%s", title, f"{evaluations:,}",
                 duration(evaluations * seconds_per_eval), 1e3 * seconds_per_eval, note)
    start = time.perf_counter()
    with tqdm(total=evaluations, desc=title, unit="eval", unit_scale=True, disable=not enabled, leave=False) as bar:
        yield bar
    if enabled:
        log.info("%s: done in %s", title, duration(time.perf_counter() - start))
