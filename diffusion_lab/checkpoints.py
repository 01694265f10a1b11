"""Finding, reading, identifying and loading checkpoints.

A checkpoint written by train.py carries the run's resolved config (`hyper_parameters`) and a fingerprint of
the part that fixes the shape and meaning of its weights: the network, the noise schedule (with T) and the
image shape. Reading one never unpickles code (`weights_only=True`) and never writes to it.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffusion_lab.errors import ConfigError
from diffusion_lab.files import write_atomic

IDENTITY_KEYS = ("net", "diffusion", "image_size", "channels")  # of the `module` config: what the weights mean
# Keys added to those parts after runs had been written, with the value those runs had: left out of the identity
# at that value, so that the fingerprints of earlier runs stay theirs (and such a run can still be resumed).
ADDED_DEFAULTS = {"net": {"learn_sigma": False}, "diffusion": {"learn_sigma": False, "loss": "simple",
                                                                 "vlb_weight": 0.001}}


def identity(module_cfg: dict) -> dict:
    """The part of a run's `module` config (resolved, as plain containers) that its weights depend on."""
    parts = {key: module_cfg.get(key) for key in IDENTITY_KEYS}
    for part, defaults in ADDED_DEFAULTS.items():
        if isinstance(parts[part], dict):
            parts[part] = {k: v for k, v in parts[part].items() if k not in defaults or v != defaults[k]}
    return parts


def fingerprint(module_cfg: dict) -> str:
    """SHA-256 (16 hex digits) of `identity(module_cfg)` as canonical JSON."""
    text = json.dumps(identity(module_cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """`key: a → b` for every leaf where two nested configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a} → {b}"]


def checkpoint_step(path: Path) -> int:
    """The optimizer step in a name such as `step0001000.ckpt` (-1 if it has none)."""
    digits = path.stem.removeprefix("step")
    return int(digits) if digits.isdigit() else -1


def find_checkpoint(path: str | Path, key: str = "ckpt") -> tuple[Path, Path]:
    """(checkpoint file, run directory) for a run directory (its `checkpoints/last.ckpt`, else its checkpoint of the
    highest step) or a .ckpt path."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints"
        candidates = [folder / "last.ckpt"] if (folder / "last.ckpt").exists() else sorted(
            folder.glob("step*.ckpt"), key=checkpoint_step)[-1:]
        if not candidates:
            raise ConfigError(f"{key}={str(path)!r}: no checkpoints/last.ckpt or checkpoints/step*.ckpt in this run "
                              "directory; allowed values are a run directory with a checkpoint, or a .ckpt file")
        return candidates[0], path
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r}: no such file or directory; allowed values are a run directory or a "
                          ".ckpt file")
    return path, path.parent.parent if path.parent.name == "checkpoints" else path.parent


def read_checkpoint(path: str | Path, key: str = "ckpt", map_location: str = "cpu") -> dict:
    """A train.py checkpoint, read with `weights_only=True` and checked: readable (not truncated or corrupt),
    carrying a config, and with a fingerprint that matches that config. The file is only read."""
    import torch  # here, so that the command line can resolve paths without importing torch

    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, not a checkpoint, or holding objects that are not plain data
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}={str(path)!r}: cannot be read as a checkpoint ({reason}); the file is left as "
                          "it is") from None
    module_cfg = ckpt.get("hyper_parameters", {}).get("module") if isinstance(ckpt, dict) else None
    if not module_cfg or "fingerprint" not in ckpt or "state_dict" not in ckpt:
        raise ConfigError(f"{key}={str(path)!r}: not a diffusion-lab checkpoint (no config, fingerprint or weights); "
                          "allowed values are checkpoints written by train.py")
    if fingerprint(module_cfg) != ckpt["fingerprint"]:
        raise ConfigError(f"{key}={str(path)!r}: its config does not match the fingerprint of its weights "
                          f"({fingerprint(module_cfg)} != {ckpt['fingerprint']}); the file was edited or mixed up")
    return ckpt


def check_same_model(key: str, path: str | Path, ckpt: dict, module_cfg: dict) -> None:
    """ConfigError naming the differences when `module_cfg` describes other weights than the checkpoint's."""
    if fingerprint(module_cfg) != ckpt["fingerprint"]:
        changed = differences(identity(ckpt["hyper_parameters"]["module"]), identity(module_cfg))
        raise ConfigError(f"{key}={str(path)!r}: the checkpoint's weights belong to another model or schedule "
                          f"({'; '.join(changed[:4])}); allowed: the run's own model, schedule, T and image size")


SHIPPED_KEYS = ("state_dict", "hyper_parameters", "fingerprint", "epoch", "global_step", "pytorch-lightning_version")


def export_weights(path: str | Path, out_dir: str | Path) -> Path:
    """The EMA weights of the run or checkpoint at `path` with its config and fingerprint, and nothing else (no
    raw weights, optimizer or loop state: a tenth of the size), as `out_dir/checkpoints/last.ckpt`, a run
    directory that sample.py and evaluate.py read like any other (`ckpt=out_dir`). Returns the file."""
    import torch  # here, so that the command line can resolve paths without importing torch

    ckpt_path, _ = find_checkpoint(path)
    ckpt = read_checkpoint(ckpt_path)
    target = Path(out_dir) / "checkpoints" / "last.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = {key: ckpt[key] for key in SHIPPED_KEYS if key in ckpt}
    return write_atomic(target, lambda f: torch.save(kept, f), binary=True)


def load_run(path: str | Path, ema: bool = True, map_location: str = "cpu"):
    """(DiffusionModule in eval mode, its config, run directory) rebuilt from a checkpoint's stored config.

    `ema=True` loads the EMA weights (the checkpoint's `state_dict`), `ema=False` the raw ones. The file is
    read with `weights_only=True`: no code in a checkpoint is ever run. The weights keep the memory layout the
    run trained with (`speed.channels_last`); `generation.prepare_sampling` may compile the network.
    """
    ckpt_path, run_dir = find_checkpoint(path)
    ckpt = read_checkpoint(ckpt_path, map_location=map_location)
    cfg = OmegaConf.create(ckpt["hyper_parameters"])
    module = instantiate(cfg.module)
    state = ckpt["state_dict"] if ema else ckpt.get("current_model_state", ckpt["state_dict"])
    module.load_state_dict(state)
    return module.eval(), cfg, run_dir
