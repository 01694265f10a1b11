"""Which K of the T training timesteps a K-step sampler visits, named as in diffusers' schedulers.

Fewer steps than T must cover the whole chain, from (near) T−1 down to (near) 0: running only the last K
steps of the chain would start from an x_K that is not pure noise. After the last listed timestep every
sampler steps to ᾱ = 1, i.e. to x_0.
"""

import numpy as np

from diffusion_lab import rules


def spaced_timesteps(T: int, K: int, spacing: str = "trailing") -> list[int]:
    """K distinct timesteps of {0..T−1} in descending order.

    - trailing (default; Lin et al. 2024): T−1, T−1−T/K, …; the first step is always pure noise.
    - linspace: K points from T−1 to 0 inclusive, rounded (T−1 alone for K = 1).
    - leading: 0, T//K, 2·T//K, … reversed (DDIM's original choice); starts below T−1 when K does not divide
      T evenly into the top of the chain, e.g. at 980 for K = 50 of T = 1000.
    """
    rules.SPACING.check("sampler.spacing", spacing)
    rules.check_step_counts("steps", K, T)
    if spacing == "trailing":
        steps = np.round(np.arange(T, 0, -T / K)).astype(np.int64) - 1
    elif spacing == "linspace":  # np.linspace gives [0] for K = 1; one step must start from noise
        steps = np.linspace(0, T - 1, K).round().astype(np.int64)[::-1] if K > 1 else np.array([T - 1])
    else:
        steps = (np.arange(K) * (T // K)).astype(np.int64)[::-1]
    return [int(t) for t in steps]
