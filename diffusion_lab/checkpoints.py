"""Finding, reading and identifying checkpoints, and the command line that resumes one.

A checkpoint written by train.py carries the run's resolved config (`hyper_parameters`) and a fingerprint of
the part that fixes the shape and meaning of its weights: the network, the noise schedule (with T) and the
image shape. Reading one never unpickles code (`weights_only=True`) and never writes to it.
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from diffusion_lab.errors import ConfigError

_RESUME_STAMP = time.strftime("%Y%m%d-%H%M%S")  # one per process: Hydra may resolve the folder more than once

IDENTITY_KEYS = ("net", "diffusion", "image_size", "channels")  # of the `module` config: what the weights mean


def identity(module_cfg: dict) -> dict:
    """The part of a run's `module` config (resolved, as plain containers) that its weights depend on."""
    return {key: module_cfg.get(key) for key in IDENTITY_KEYS}


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


def override_key(override: str) -> str:
    """`+trainer.max_epochs=3` → `trainer.max_epochs`; `schedule=cosine` → `schedule`."""
    return override.partition("=")[0].lstrip("+~")


def resume_command(argv: list[str]) -> list[str]:
    """The command line of a `resume=<run dir or .ckpt>` run: the overrides that the run was last started with,
    then this command's own (which replace those of the same key), as a single run (`hydra.mode=RUN`, for
    presets that set MULTIRUN). Without `resume=`, `argv` unchanged."""
    given = [a for a in argv[1:] if override_key(a) == "resume"]
    if not given:
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError("resume: resumes one run; drop -m/--multirun")
    _, run_dir = find_checkpoint(given[-1].partition("=")[2], key="resume")
    mine = [a for a in argv[1:] if not a.startswith("-")]
    keys = {override_key(a) for a in mine}
    earlier = [o for o in last_overrides(run_dir) if override_key(o) not in keys | {"resume"}]
    flags = [a for a in argv[1:] if a.startswith("-")]
    single_run = [] if "hydra.mode" in keys else ["hydra.mode=RUN"]
    return [argv[0], *flags, *earlier, *mine, *single_run]


def last_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of the latest start of a run: `.hydra/overrides.yaml`, or its latest resume's."""
    files = sorted((run_dir / ".hydra").glob("resume-*/overrides.yaml")) or [run_dir / ".hydra" / "overrides.yaml"]
    return list(OmegaConf.load(files[-1])) if files[-1].is_file() else []


def resume_run_dir(resume: str | None, default: str) -> str:
    """Hydra's run directory: that of the run being resumed, else `default`."""
    return str(find_checkpoint(resume, key="resume")[1]) if resume else default


def resume_subdir(resume: str | None, suffix: str) -> str:
    """Where Hydra saves this start's config: `.hydra`, or for a resume `.hydra/resume-<time>-<suffix>`, so that
    the files of the run's first start stay as they were."""
    return f".hydra/resume-{_RESUME_STAMP}-{suffix}" if resume else ".hydra"
