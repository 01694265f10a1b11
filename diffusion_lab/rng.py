"""Named random streams: every random draw of the project comes from a generator keyed by integers, so that a
stream depends only on its key (seed, purpose, position), never on what ran before it or on the process count."""

import numpy as np
import torch

# Purposes, the second entry of a key, so that streams of different uses never coincide.
TRAIN_ORDER, TRAIN_NOISE = 101, 102


def seeded_generator(*key: int, device="cpu") -> torch.Generator:
    """A generator whose stream is fixed by `key` (e.g. seed, rank, purpose) and independent of other keys'."""
    state = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device).manual_seed(state)
