"""Start-up checks of a composed config, before anything heavy is imported: a bad value stops the command at
once with one line that names the key and its allowed values.

Hydra already rejects unknown keys and unknown group options (see `errors.error_line`). Each value is checked
by its rule in `rules`, the same rule the class or function that uses it applies; the step counts are checked
against T, the one key they depend on.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from diffusion_lab import rules
from diffusion_lab.checkpoints import find_checkpoint
from diffusion_lab.config import SAMPLERS
from diffusion_lab.errors import ConfigError
from diffusion_lab.rules import Allowed, integer, is_int, is_list, is_number, number, one_of, show

MISSING = object()

COUNT_LISTS = Allowed(lambda v: is_list(v) and len(v) > 0 and all(is_int(k) and k >= 1 for k in v),
                     "non-empty lists of integers >= 1")  # step counts or NFE budgets
NFE_BUDGETS = Allowed(lambda v: v is None or COUNT_LISTS.test(v), f"null or {COUNT_LISTS.words}")
SAMPLER_RULES = {  # the settings of conf/sampler/ options, where a config has them
    "sampler.spacing": rules.SPACING,
    "sampler.eta": rules.ETA,
    "sampler.variance": rules.VARIANCE,
    "sampler.order": rules.SOLVER_ORDER,
    "sampler.algorithm": rules.DPM_ALGORITHM,
    "sampler.lower_order_final": rules.BOOLEAN,
    "sampler.clip_denoised": rules.BOOLEAN,
    "sampler.dynamic_threshold": rules.PERCENTILE,
    **{f"sampler.{key}": rules.CHURN for key in ("s_churn", "s_tmin", "s_tmax", "s_noise")},
}
TRAIN_RULES = {
    "T": rules.T,
    "seed": integer(0),
    "prediction": rules.PREDICTION,
    "loss_weighting": rules.LOSS_WEIGHTING,
    "module.p_uncond": number(0, 1),
    "model.num_classes": integer(2, special=(None,)),
    "optimizer.lr": number(0, lo_open=True),
    "optimizer.weight_decay": number(0),
    "module.warmup_steps": integer(0),
    "module.lr_schedule": rules.LR_SCHEDULE,
    "callbacks.ema.gamma": rules.EMA_GAMMA,
    "dataset.name": rules.DATASET,
    "dataset.batch_size": rules.BATCH_SIZE,
    "dataset.val_size": integer(1),
    "dataset.download": rules.BOOLEAN,
    "trainer.max_epochs": integer(1, special=(-1, None)),
    "trainer.max_steps": integer(1, special=(-1,)),
    "trainer.max_time": rules.DURATION,
    "trainer.devices": rules.DEVICES,
    "trainer.accelerator": rules.ACCELERATOR,
    "trainer.precision": one_of(*rules.PRECISIONS),
    "trainer.gradient_clip_val": number(0, special=(None,)),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": integer(1),
    "trainer.limit_train_batches": number(0, lo_open=True),
    "trainer.limit_val_batches": number(0),
    "trainer.num_sanity_val_steps": integer(0, special=(-1,)),
    "trainer.deterministic": one_of(True, False, "warn"),
    "speed.channels_last": rules.BOOLEAN,
    "speed.compile": rules.BOOLEAN,
    "speed.matmul_precision": one_of("highest", "high", "medium"),
    "speed.cudnn_benchmark": rules.BOOLEAN,
    "sampling.n_images": rules.IMAGE_COUNT,
    "sampling.every_n_epochs": rules.EVERY_N_EPOCHS,
    "quality.n": rules.SCORED_COUNT,
    "quality.final_n": rules.SCORED_COUNT,
    "quality.real_n": rules.SCORED_COUNT,
    "quality.every_n_epochs": rules.EVERY_N_EPOCHS,
    "quality.resamples": rules.RESAMPLES,
    "after_training.budget": rules.TIME_BUDGET,
    "callbacks.ema.decay": rules.EMA_DECAY,
    "callbacks.checkpoint.every_n_train_steps": integer(0, special=(None,)),
    "callbacks.checkpoint.save_top_k": integer(1, special=(-1,)),
    "sampling.nfe": NFE_BUDGETS,
} | SAMPLER_RULES
TRAIN_STEP_COUNTS = ("sampling.steps", "quality.steps", "quality.final_steps")  # each at most T
COMMON_RULES = {  # sample.py and evaluate.py
    "seed": integer(0),
    "batch_size": integer(1, special=("auto",)),
    "ema": rules.BOOLEAN,
    "compile": one_of(True, False, "auto"),
    "devices": rules.DEVICES,
    "accelerator": rules.ACCELERATOR,
}
SAMPLE_RULES = COMMON_RULES | {
    "class": integer(0, special=(None,)),
    "guidance_scale": rules.GUIDANCE_SCALE,
    "n": rules.IMAGE_COUNT,
    "steps": integer(1, special=(None,)),
    "nfe": rules.NFE,
    "progress": rules.BOOLEAN,
} | SAMPLER_RULES
EVALUATE_RULES = COMMON_RULES | {
    "samplers": Allowed(lambda v: is_list(v) and len(v) > 0 and all(s in SAMPLERS for s in v),
                        f"non-empty lists of {', '.join(SAMPLERS)}"),
    "n": rules.SCORED_COUNT,
    "real_n": rules.SCORED_COUNT,
    "resamples": rules.RESAMPLES,
    "steps": COUNT_LISTS,
    "nfe": NFE_BUDGETS,
    "spacings": Allowed(lambda v: v is None or (is_list(v) and len(v) > 0 and all(s in rules.SPACINGS for s in v)),
                        f"null or non-empty lists of {', '.join(rules.SPACINGS)}"),
    "wandb": rules.BOOLEAN,
    "guidance_scales": Allowed(lambda v: is_list(v) and len(v) > 0 and all(is_number(w) and w >= 0 for w in v),
                               "non-empty lists of numbers >= 0"),
}
VIZ_RULES = {
    "seed": integer(0),
    "steps": EVALUATE_RULES["steps"],
    "samplers": EVALUATE_RULES["samplers"],
    "ema": rules.BOOLEAN,
    "n_seeds": rules.IMAGE_COUNT,
}
FEATURE_NET_RULES = {
    "epochs": integer(1, special=(None,)),
    "batch_size": integer(1, special=(None,)),
    "lr": number(0, lo_open=True, special=(None,)),
    "num_features": integer(1, special=(None,)),
    "seed": integer(0, special=(None,)),
    "flip": one_of(True, False, None),
}


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=MISSING, throw_on_resolution_failure=True)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def check(cfg: DictConfig, rules_by_key: dict[str, Allowed]) -> None:
    """Each `key: Allowed` of `rules_by_key` whose key is in `cfg`; keys a config does not have are skipped."""
    for key, allowed in rules_by_key.items():
        value = _select(cfg, key)
        if value is not MISSING:
            allowed.check(key, value)


def given_on_command_line(key: str) -> bool:
    """Whether this command's overrides set `key` (False outside a Hydra command)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and any(o.split("=", 1)[0].lstrip("+~") == key
                                             for o in HydraConfig.get().overrides.task)


def check_steps_or_nfe(cfg: DictConfig, steps_key: str = "steps", nfe_key: str = "nfe") -> None:
    """A chain's cost is given as steps or as NFE, not both."""
    nfe = _select(cfg, nfe_key)
    if nfe not in (None, MISSING) and given_on_command_line(steps_key):
        raise ConfigError(f"{nfe_key}={show(nfe)}: allowed only without {steps_key}= (both were given; "
                          "each sets what a chain costs)")


def check_train_config(cfg: DictConfig) -> None:
    """All the checks for `train.py`'s config; raises ConfigError at the first bad value."""
    check(cfg, TRAIN_RULES)
    check_steps_or_nfe(cfg, "sampling.steps", "sampling.nfe")
    rules.check_terminal_snr(cfg.get("prediction"), _select(cfg, "schedule.zero_terminal_snr") is True)
    for key in TRAIN_STEP_COUNTS:
        steps = _select(cfg, key)
        if steps is not MISSING:
            rules.check_step_counts(key, steps, cfg.T)
    check_lr_budget(cfg)
    if cfg.get("resume") is not None:
        find_checkpoint(str(cfg.resume), key="resume")


def check_lr_budget(cfg: DictConfig) -> None:
    """A learning rate that decays to the end of the budget needs one: max_steps, max_epochs or max_time."""
    schedule = _select(cfg, "module.lr_schedule")
    if schedule in (MISSING, None, "constant"):
        return
    limits = [_select(cfg, f"trainer.{key}") for key in ("max_steps", "max_epochs", "max_time")]
    if all(v in (MISSING, None, -1) for v in limits):
        raise ConfigError(f"module.lr_schedule={schedule} decays to the end of the training budget, and this run "
                          "has none: set trainer.max_steps, trainer.max_epochs or trainer.max_time, or use "
                          "module.lr_schedule=constant")


def check_sample_config(cfg: DictConfig) -> None:
    """`sample.py`'s config (the step count is checked against the run's T once its checkpoint is read)."""
    find_checkpoint(str(cfg.ckpt))
    check(cfg, SAMPLE_RULES)
    check_steps_or_nfe(cfg)


def check_evaluate_config(cfg: DictConfig) -> None:
    """`evaluate.py`'s config (step counts are checked against the run's T once its checkpoint is read)."""
    find_checkpoint(str(cfg.ckpt))
    check(cfg, EVALUATE_RULES)
    check_steps_or_nfe(cfg)


def check_viz_config(cfg: DictConfig) -> None:
    """`python -m diffusion_lab.viz`'s config (step counts above the run's T are skipped, with a message)."""
    find_checkpoint(str(cfg.ckpt))
    check(cfg, VIZ_RULES)


def check_feature_net_config(cfg: DictConfig) -> None:
    """`python -m diffusion_lab.metrics.feature_net`'s config."""
    check(cfg, FEATURE_NET_RULES)
