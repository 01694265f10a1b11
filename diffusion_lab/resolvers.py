"""OmegaConf resolvers used by conf/ (registered on import, before Hydra composes)."""

import hashlib
import os
import secrets
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import ListConfig, OmegaConf

from diffusion_lab.config import CONFIG_GROUPS
from diffusion_lab.resume import resume_run_dir, resume_subdir

_PROCESS_SUFFIX = secrets.token_hex(3)


def unique_suffix() -> str:
    """Six hex characters drawn once per process: two runs started in the same second get different dirs."""
    return _PROCESS_SUFFIX


def sweep_stamp() -> str:
    """`<date>/<time>-<suffix>` of a sweep, fixed when the launching process first resolves it and inherited
    through the environment by the processes that run its jobs (submitit, SLURM), which resolve the sweep
    folder again: every job lands in the same one."""
    if "DIFFUSION_LAB_SWEEP" not in os.environ:
        os.environ["DIFFUSION_LAB_SWEEP"] = f"{time.strftime('%Y-%m-%d/%H-%M-%S')}-{_PROCESS_SUFFIX}"
    return os.environ["DIFFUSION_LAB_SWEEP"]


def short_override(override: str) -> str:
    """`dataset=fashion_mnist` → `fashion_mnist` (a group's choice), `optimizer.lr=1e-3` → `lr=1e-3`,
    `~callbacks.figures` → `no_figures`."""
    key, _, value = override.partition("=")
    if key.startswith("~"):
        return f"no_{key[1:].split('.')[-1]}"
    key = key.lstrip("+")
    return value if key in CONFIG_GROUPS else f"{key.split('.')[-1]}={value}"


def short_name(overrides, max_len: int = 100) -> str:
    """The command-line overrides as a short folder name, e.g. `fashion_mnist,cosine,T=200`; a longer one is
    cut and given a hash of the whole, so that names stay distinct."""
    name = ",".join(short_override(o) for o in overrides).replace("/", "_") or "defaults"
    if len(name) > max_len:
        name = f"{name[:max_len - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def at_most(steps, T: int):
    """Default step counts for any T: those of the list `steps` that are at most T, or min(steps, T) for one."""
    return [k for k in steps if k <= T] if isinstance(steps, (list, tuple, ListConfig)) else min(steps, T)


def wandb_id(run_dir: str) -> str:
    """The W&B run id of a run directory (a hash of its path): a resumed run logs to the same W&B run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def override_tags(overrides) -> list[str]:
    """One tag per command-line override (W&B allows 64 characters a tag)."""
    return [short_override(o)[:64] for o in overrides]


def _multirun_job():
    """This job's Hydra config under `-m`, else None."""
    return HydraConfig.get() if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN else None


def sweep_group() -> str | None:
    """Under `-m`, the sweep's folder as `<date>/<time>-<suffix>` (W&B groups the sweep's runs by it)."""
    job = _multirun_job()
    return "/".join(Path(job.sweep.dir).parts[-2:]) if job else None


def job_suffix() -> str:
    """Under `-m`, `#<job number>`, so that W&B names of jobs that differ in plain values stay distinct."""
    job = _multirun_job()
    num = OmegaConf.select(job, "job.num") if job else None  # None in compose(), which launches no job
    return "" if num is None else f"#{num}"


OmegaConf.register_new_resolver("unique_suffix", unique_suffix, replace=True)
OmegaConf.register_new_resolver("sweep_stamp", sweep_stamp, replace=True)
OmegaConf.register_new_resolver("short_name", short_name, replace=True)
OmegaConf.register_new_resolver("override_tags", override_tags, replace=True)
OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)
OmegaConf.register_new_resolver("job_suffix", job_suffix, replace=True)
OmegaConf.register_new_resolver("resume_run_dir", resume_run_dir, replace=True)
OmegaConf.register_new_resolver("resume_subdir", lambda resume: resume_subdir(resume, _PROCESS_SUFFIX), replace=True)
OmegaConf.register_new_resolver("at_most", at_most, replace=True)
OmegaConf.register_new_resolver("wandb_id", wandb_id, replace=True)
