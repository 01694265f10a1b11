"""Start-up checks of a composed config, before anything heavy is imported: a bad value stops the run at once
with one line that names the key and its allowed values.

Hydra already rejects unknown keys and unknown group options (see `cli.hydra_error_line`); the classes the
config builds check their own arguments (schedule, sampler, U-Net, EMA, data module). This module covers the
rest: plain values that Lightning or PyTorch would accept and fail on much later, or misread, and the keys
that depend on one another (every step count at most T).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from diffusion_lab.checkpoints import find_checkpoint
from diffusion_lab.config import CONFIG_DIR
from diffusion_lab.errors import ConfigError

MISSING = object()


@dataclass(frozen=True)
class Allowed:
    """A predicate on a value with the words that describe what it accepts."""

    test: Callable[[Any], bool]
    words: str

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{key}={_show(value)}: allowed values are {self.words}")


def _show(value: Any) -> str:
    return str(OmegaConf.to_container(value)) if isinstance(value, (DictConfig, ListConfig)) else repr(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int, hi: int | None = None, also: tuple = ()) -> Allowed:
    words = f"integers >= {lo}" if hi is None else f"integers {lo}..{hi}"
    return Allowed(lambda v: v in also or (_is_int(v) and lo <= v and (hi is None or v <= hi)),
                   words + "".join(f" or {a}" for a in also))


def number(lo: float, hi: float | None = None, lo_open: bool = False, also: tuple = ()) -> Allowed:
    def test(v):
        if v in also and not isinstance(v, bool):
            return True
        return _is_number(v) and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)

    words = f"numbers {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
    return Allowed(test, words + "".join(f" or {a}" for a in also))


def one_of(*values) -> Allowed:
    return Allowed(lambda v: any(v == a and type(v) is type(a) for a in values), ", ".join(map(str, values)))


BOOLEAN = one_of(True, False)
DURATION = Allowed(lambda v: v is None or (isinstance(v, str) and len(v.split(":")) == 4
                                           and all(p.isdigit() for p in v.split(":"))), "null or DD:HH:MM:SS")
DEVICES = Allowed(lambda v: v == "auto" or (_is_int(v) and v >= 1) or v == -1
                  or (isinstance(v, (list, ListConfig)) and len(v) > 0 and all(_is_int(d) and d >= 0 for d in v)),
                  "integers >= 1, -1 (all), auto, or a list of device indices")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=MISSING, throw_on_resolution_failure=True)


def check(cfg: DictConfig, rules: dict[str, Allowed]) -> None:
    """Each `key: Allowed` of `rules` whose key is in `cfg`; keys a config does not have are skipped."""
    for key, allowed in rules.items():
        value = _select(cfg, key)
        if value is not MISSING:
            allowed.check(key, value)


def check_step_counts(key: str, steps: Any, T: int) -> None:
    """Every sampling step count in `steps` (an int or a list) is an integer in 1..T."""
    values = list(steps) if isinstance(steps, (list, tuple, ListConfig)) else [steps]
    bad = [s for s in values if not (_is_int(s) and 1 <= s <= T)]
    if bad:
        raise ConfigError(f"{key}={_show(steps)}: {', '.join(map(repr, bad))} not allowed; step counts are "
                          f"integers 1..T={T}")


TRAIN_RULES = {
    "T": integer(1),
    "seed": integer(0),
    "prediction": one_of("eps", "x0", "v"),
    "loss_weighting": one_of("none", "min_snr"),
    "module.p_uncond": number(0, 1),
    "model.num_classes": integer(2, also=(None,)),
    "optimizer.lr": number(0, lo_open=True),
    "optimizer.weight_decay": number(0),
    "module.warmup_steps": integer(0),
    "dataset.name": one_of("mnist", "fashion_mnist"),
    "dataset.batch_size": integer(1),
    "dataset.val_size": integer(1),
    "dataset.download": BOOLEAN,
    "trainer.max_epochs": integer(1, also=(-1, None)),
    "trainer.max_steps": integer(1, also=(-1,)),
    "trainer.max_time": DURATION,
    "trainer.devices": DEVICES,
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.gradient_clip_val": number(0, also=(None,)),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": integer(1),
    "trainer.limit_train_batches": number(0, lo_open=True),
    "trainer.limit_val_batches": number(0),
    "trainer.num_sanity_val_steps": integer(0, also=(-1,)),
    "trainer.deterministic": one_of(True, False, "warn"),
    "speed.channels_last": BOOLEAN,
    "speed.compile": BOOLEAN,
    "speed.matmul_precision": one_of("highest", "high", "medium"),
    "speed.cudnn_benchmark": BOOLEAN,
    "sampling.n_images": integer(1),
    "sampling.every_n_epochs": integer(1),
    "quality.n": integer(2),
    "quality.final_n": integer(2),
    "quality.real_n": integer(2),
    "quality.every_n_epochs": integer(1),
    "callbacks.ema.decay": Allowed(lambda v: _is_number(v) and 0 <= v < 1, "numbers >= 0 and < 1"),
    "callbacks.checkpoint.every_n_train_steps": integer(0, also=(None,)),
    "callbacks.checkpoint.save_top_k": integer(1, also=(-1,)),
    "sampler.eta": number(0, 1),
}
COMMON_RULES = {  # sample.py and evaluate.py
    "seed": integer(0),
    "batch_size": integer(1),
    "ema": BOOLEAN,
    "compile": BOOLEAN,
    "devices": DEVICES,
    "accelerator": TRAIN_RULES["trainer.accelerator"],
}
SAMPLE_RULES = COMMON_RULES | {
    "class": integer(0, also=(None,)),
    "guidance_scale": number(0),
    "n": integer(1),
    "steps": integer(1, also=(None,)),
    "progress": BOOLEAN,
    "sampler.eta": number(0, 1),
}
SAMPLERS = sorted(p.stem for p in (Path(CONFIG_DIR) / "sampler").glob("*.yaml"))  # the options of conf/sampler/
EVALUATE_RULES = COMMON_RULES | {
    "samplers": Allowed(lambda v: isinstance(v, ListConfig) and len(v) > 0 and all(s in SAMPLERS for s in v),
                        f"non-empty lists of {', '.join(SAMPLERS)}"),
    "n": integer(2),
    "real_n": integer(2),
    "steps": Allowed(lambda v: isinstance(v, ListConfig) and len(v) > 0 and all(_is_int(k) and k >= 1 for k in v),
                     "non-empty lists of integers >= 1"),
    "wandb": BOOLEAN,
    "guidance_scales": Allowed(lambda v: isinstance(v, ListConfig) and len(v) > 0
                               and all(_is_number(w) and w >= 0 for w in v), "non-empty lists of numbers >= 0"),
}


def check_train_config(cfg: DictConfig) -> None:
    """All the checks for `train.py`'s config; raises ConfigError at the first bad value."""
    check(cfg, TRAIN_RULES)
    for key in ("sampling.steps", "quality.steps", "quality.final_steps"):
        steps = _select(cfg, key)
        if steps is not MISSING:
            check_step_counts(key, steps, cfg.T)
    if cfg.get("resume") is not None:
        check_path("resume", cfg.resume)


def check_sample_config(cfg: DictConfig) -> None:
    """`sample.py`'s config (the step count is checked against the run's T once its checkpoint is read)."""
    check_path("ckpt", cfg.ckpt)
    check(cfg, SAMPLE_RULES)


def check_evaluate_config(cfg: DictConfig) -> None:
    """`evaluate.py`'s config (step counts are checked against the run's T once its checkpoint is read)."""
    check_path("ckpt", cfg.ckpt)
    check(cfg, EVALUATE_RULES)


def check_path(key: str, value: Any) -> None:
    """`value` names a checkpoint file or a run directory that holds one (see checkpoints.find_checkpoint)."""
    find_checkpoint(str(value), key=key)
