"""Named random streams: every random draw of the project comes from a generator keyed by integers, so that a
stream depends only on its key (seed, purpose, position), never on what ran before it or on the process count."""

import random

import numpy as np
import torch

# Purposes, the second entry of a key, so that streams of different uses never coincide.
TRAIN_ORDER, TRAIN_NOISE = 101, 102


def seeded_generator(*key: int, device="cpu") -> torch.Generator:
    """A generator whose stream is fixed by `key` (e.g. seed, rank, purpose) and independent of other keys'."""
    state = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device).manual_seed(state)


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
