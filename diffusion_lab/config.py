"""OmegaConf resolvers used by conf/ (registered on import, before Hydra composes)."""

import secrets

from omegaconf import OmegaConf

_PROCESS_SUFFIX = secrets.token_hex(3)


def unique_suffix() -> str:
    """Six hex characters drawn once per process: two runs started in the same second get different dirs."""
    return _PROCESS_SUFFIX


OmegaConf.register_new_resolver("unique_suffix", unique_suffix, replace=True)
