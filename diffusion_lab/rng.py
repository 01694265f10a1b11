"""Named random streams: every random draw of the project comes from a generator keyed by integers, so that a
stream depends only on its key (seed, purpose, position), never on what ran before it or on the process count."""

import random
from collections.abc import Iterable

import numpy as np
import torch

# Purposes, the second entry of a key, so that streams of different uses never coincide.
TRAIN_ORDER, TRAIN_NOISE, IMAGE_NOISE, NLL_NOISE, ODE_NOISE = 101, 102, 103, 104, 105


def seeded_generator(*key: int, device="cpu") -> torch.Generator:
    """A generator whose stream is fixed by `key` (e.g. seed, rank, purpose) and independent of other keys'."""
    state = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device).manual_seed(state)


class ImageNoise:
    """One noise stream per generated image, keyed (seed, IMAGE_NOISE, image index): every draw gives each image
    of a batch the next normal numbers of its own stream. An image's starting noise and its per-step noise are
    then the same whatever batch it is drawn in, whichever process draws it and whatever was drawn before, so
    settings evaluated on the same seed compare image by image. Samplers take it in place of a generator.
    `purpose` keys another family of streams (NLL_NOISE: the noise of a test image's bound terms; ODE_NOISE:
    its dequantization and trace probe)."""

    def __init__(self, seed: int, indices: Iterable[int], device="cpu", purpose: int = IMAGE_NOISE):
        self.generators = [seeded_generator(seed, purpose, int(i), device=device) for i in indices]

    def randn(self, image_shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A batch (one row per image) of standard normal noise of `image_shape`."""
        return torch.stack([torch.randn(image_shape, generator=g, device=g.device, dtype=dtype)
                            for g in self.generators])


def rng_states() -> dict:
    """The process's global random states (Python, NumPy, torch CPU and CUDA) as plain data and tensors, so
    that a checkpoint holding them loads with `weights_only=True`. The project's own draws are keyed (above);
    these serve what draws from the global streams, such as dropout."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
