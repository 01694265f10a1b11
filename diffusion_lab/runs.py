"""The run directory: atomic writes, and rebuilding a trained model from its checkpoint."""

import itertools
import json
import os
import tempfile
from pathlib import Path

import torch

from diffusion_lab.errors import ConfigError


def write_json_atomic(path: str | Path, data: dict) -> Path:
    """Write JSON to a temporary file beside `path`, then rename it: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fresh_dir(base: str | Path) -> Path:
    """Create and return `base`, or `base-1`, `base-2`, …: the first that does not exist yet (never overwrite)."""
    base = Path(base)
    for k in itertools.count():
        path = base if k == 0 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, run directory) for a run directory or a .ckpt path."""
    path = Path(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.exists():
            raise ConfigError(f"ckpt={str(path)!r}: a run directory must hold checkpoints/last.ckpt")
        return ckpt, path
    if not path.is_file():
        raise ConfigError(f"ckpt={str(path)!r}: no such checkpoint file or run directory")
    return path, path.parent.parent if path.parent.name == "checkpoints" else path.parent


def load_run(path: str | Path, ema: bool = True, map_location: str = "cpu", compile: bool = False):
    """(DiffusionModule in eval mode, its config, run directory) rebuilt from a checkpoint's stored config.

    `ema=True` loads the EMA weights (the checkpoint's `state_dict`), `ema=False` the raw ones. The file is
    read with `weights_only=True`: no code in a checkpoint is ever run. `compile=True` compiles the network's
    forward (torch.compile); the weights keep the memory layout the run trained with (`speed.channels_last`).
    """
    from hydra.utils import instantiate  # keeps the module importable without Hydra's start-up cost
    from omegaconf import OmegaConf

    ckpt_path, run_dir = find_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, or not a checkpoint at all
        raise ConfigError(f"ckpt={str(ckpt_path)!r}: cannot be read as a checkpoint ({type(err).__name__})") from None
    if "hyper_parameters" not in ckpt or "module" not in ckpt["hyper_parameters"]:
        raise ConfigError(f"ckpt={str(ckpt_path)!r}: holds no diffusion-lab config (not written by train.py?)")
    cfg = OmegaConf.create(ckpt["hyper_parameters"])
    module = instantiate(cfg.module)
    state = ckpt["state_dict"] if ema else ckpt.get("current_model_state", ckpt["state_dict"])
    module.load_state_dict(state)
    if compile:
        module.net.compile()
    return module.eval(), cfg, run_dir
