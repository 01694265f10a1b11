"""Start-up checks of a composed config, before anything heavy is imported: a bad value stops the command at
once with one line that names the key and its allowed values.

Hydra already rejects unknown keys and unknown group options (see `errors.error_line`). Each value is checked
by its rule in `rules`, the same rule the class or function that uses it applies; the step counts are checked
against T, the one key they depend on.
"""

import re
from collections.abc import Iterator
from fnmatch import fnmatch
from typing import Any

from omegaconf import DictConfig, Node, OmegaConf

from diffusion_lab import rules
from diffusion_lab.checkpoints import find_checkpoint
from diffusion_lab.config import SAMPLERS
from diffusion_lab.errors import ConfigError
from diffusion_lab.rules import Allowed, integer, is_list, number, one_of, show

MISSING = object()
REFERENCE = re.compile(r"^\$\{[\w.]+\}$")  # `${quality.n}`: a leaf that repeats another key's value

COUNT_LISTS = rules.list_of(integer(1), non_empty=True)  # step counts or NFE budgets
NFE_BUDGETS = Allowed(lambda v: v is None or COUNT_LISTS.test(v), f"null or {COUNT_LISTS.words}")
STEP_COUNTS = Allowed(lambda v: integer(1).test(v) or rules.list_of(integer(1)).test(v),
                      "integers >= 1 or lists of them")  # each also at most T (rules.check_step_counts)
GENERIC_RULES = {  # every config: what Hydra instantiates
    "*._target_": rules.TARGET,
    "*._partial_": rules.BOOLEAN,
}
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
DATASET_RULES = {
    "dataset.name": rules.DATASET,
    "dataset.data_dir": rules.PATH,
    "dataset.batch_size": rules.BATCH_SIZE,
    "dataset.val_size": integer(1),
    "dataset.download": rules.BOOLEAN,
    "dataset.image_size": one_of(28),  # MNIST and Fashion-MNIST
    "dataset.channels": one_of(1),
}
PATH_RULES = {
    "paths.data_dir": rules.PATH,
    "paths.log_dir": rules.PATH,
    "paths.output_dir": rules.ANY,  # Hydra's run directory: set through hydra.run.dir, never by hand
}
MODEL_RULES = {
    "model.in_channels": rules.IMAGE_CHANNELS,
    "model.image_size": rules.IMAGE_SIZE,
    "model.channels": rules.WIDTH,
    "model.channel_mults": rules.CHANNEL_MULTS,
    "model.num_res_blocks": rules.RES_BLOCKS,
    "model.attention_resolutions": rules.ATTENTION_RESOLUTIONS,
    "model.dropout": rules.DROPOUT,
    "model.norm_groups": rules.NORM_GROUPS,
    "model.num_classes": rules.NUM_CLASSES,
    "model.learn_sigma": rules.BOOLEAN,
}
SCHEDULE_RULES = {
    "schedule.beta_start": rules.BETA,
    "schedule.beta_end": rules.BETA,
    "schedule.s": rules.COSINE_OFFSET,
    "schedule.max_beta": rules.MAX_BETA,
    "schedule.start": rules.SIGMOID_END,
    "schedule.end": rules.SIGMOID_END,
    "schedule.tau": rules.SIGMOID_TAU,
    "schedule.zero_terminal_snr": rules.BOOLEAN,
}
TRAINER_RULES = {
    "trainer.max_epochs": integer(1, special=(-1, None)),
    "trainer.max_steps": integer(1, special=(-1,)),
    "trainer.max_time": rules.DURATION,
    "trainer.devices": rules.DEVICES,
    "trainer.accelerator": rules.ACCELERATOR,
    "trainer.strategy": one_of("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook",
                               "ddp_find_unused_parameters_true", "fsdp", "deepspeed"),
    "trainer.precision": one_of(*rules.PRECISIONS),
    "trainer.gradient_clip_val": number(0, special=(None,)),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": integer(1),
    "trainer.limit_train_batches": number(0, lo_open=True),
    "trainer.limit_val_batches": number(0),
    "trainer.num_sanity_val_steps": integer(0, special=(-1,)),
    "trainer.deterministic": one_of(True, False, "warn"),
    "trainer.use_distributed_sampler": one_of(False),  # the data module shards each global batch itself
    "trainer.plugins": Allowed(lambda v: v is None or (is_list(v) and all(isinstance(p, dict) and "_target_" in p
                                                                          for p in v)),
                               "null or lists of configs with a _target_"),
}
LOGGER_RULES = {
    "logger.*.save_dir": rules.PATH,
    "logger.*.name": rules.TEXT,
    "logger.*.version": rules.OPTIONAL_TEXT,
    "logger.wandb.project": Allowed(lambda v: isinstance(v, str) and v != "", "non-empty strings"),
    "logger.wandb.id": rules.OPTIONAL_TEXT,
    "logger.wandb.group": rules.OPTIONAL_TEXT,
    "logger.wandb.tags": rules.list_of(rules.TEXT),
}
CALLBACK_RULES = {
    "callbacks.ema.decay": rules.EMA_DECAY,
    "callbacks.ema.gamma": rules.EMA_GAMMA,
    "callbacks.*.dirpath": rules.PATH,
    "callbacks.run_summary.path": rules.PATH,
    "callbacks.checkpoint.filename": rules.PATH,
    "callbacks.checkpoint.auto_insert_metric_name": rules.BOOLEAN,
    "callbacks.checkpoint.every_n_train_steps": integer(0, special=(None,)),
    "callbacks.checkpoint.every_n_minutes": number(0, lo_open=True, special=(None,)),
    "callbacks.checkpoint.monitor": one_of("step"),  # with mode max, save_top_k keeps the newest checkpoints
    "callbacks.checkpoint.mode": one_of("max"),
    "callbacks.checkpoint.save_top_k": integer(1, special=(-1,)),
    "callbacks.checkpoint.save_last": one_of(True, False, "link"),
    "callbacks.checkpoint.save_on_train_epoch_end": rules.BOOLEAN,
}
TRAIN_RULES = {
    "T": rules.T,
    "seed": integer(0),
    "prediction": rules.PREDICTION,
    "loss_weighting": rules.LOSS_WEIGHTING,
    "loss": rules.LOSS,
    "t_sampler": rules.T_SAMPLER,
    "resume": rules.OPTIONAL_PATH,  # a run directory or a .ckpt: find_checkpoint says which exist
    "run_name": rules.TEXT,
    "optimizer.lr": number(0, lo_open=True),
    "optimizer.weight_decay": number(0),
    "optimizer.fused": rules.BOOLEAN,
    "module.p_uncond": number(0, 1),
    "module.warmup_steps": integer(0),
    "module.lr_schedule": rules.LR_SCHEDULE,
    "module.diffusion.min_snr_gamma": rules.MIN_SNR_GAMMA,
    "module.diffusion.vlb_weight": rules.VLB_WEIGHT,
    "module.val_bpd.images": rules.BPD_IMAGES,
    "module.val_bpd.timesteps": rules.BPD_TIMESTEPS,
    "module.val_bpd.every_n_epochs": rules.EVERY_N_EPOCHS,
    "speed.channels_last": rules.BOOLEAN,
    "speed.compile": rules.BOOLEAN,
    "speed.matmul_precision": one_of("highest", "high", "medium"),
    "speed.cudnn_benchmark": rules.BOOLEAN,
    "sampling.n_images": rules.IMAGE_COUNT,
    "sampling.every_n_epochs": rules.EVERY_N_EPOCHS,
    "sampling.steps": STEP_COUNTS,
    "sampling.nfe": NFE_BUDGETS,
    "quality.steps": STEP_COUNTS,
    "quality.final_steps": STEP_COUNTS,
    "quality.n": rules.SCORED_COUNT,
    "quality.final_n": rules.SCORED_COUNT,
    "quality.real_n": rules.SCORED_COUNT,
    "quality.every_n_epochs": rules.EVERY_N_EPOCHS,
    "quality.resamples": rules.RESAMPLES,
    "quality.feature_net.epochs": integer(1, special=(None,)),
    "quality.feature_net.cache_dir": rules.OPTIONAL_PATH,
    "after_training.budget": rules.TIME_BUDGET,
} | GENERIC_RULES | DATASET_RULES | PATH_RULES | MODEL_RULES | SCHEDULE_RULES | SAMPLER_RULES | TRAINER_RULES \
  | LOGGER_RULES | CALLBACK_RULES
TRAIN_STEP_COUNTS = ("sampling.steps", "quality.steps", "quality.final_steps")  # each at most T
COMMON_RULES = {  # sample.py and evaluate.py
    "ckpt": rules.PATH,  # a run directory or a .ckpt: find_checkpoint says which exist
    "seed": integer(0),
    "batch_size": integer(1, special=("auto",)),
    "ema": rules.BOOLEAN,
    "compile": one_of(True, False, "auto"),
    "devices": rules.DEVICES,
    "accelerator": rules.ACCELERATOR,
} | GENERIC_RULES
SAMPLE_RULES = COMMON_RULES | {
    "class": integer(0, special=(None,)),
    "guidance_scale": rules.GUIDANCE_SCALE,
    "n": rules.IMAGE_COUNT,
    "steps": integer(1, special=(None,)),
    "nfe": rules.NFE,
    "progress": rules.BOOLEAN,
    "out_dir": rules.OPTIONAL_PATH,
} | SAMPLER_RULES
EVALUATE_RULES = COMMON_RULES | {
    "samplers": Allowed(lambda v: is_list(v) and all(s in SAMPLERS for s in v),
                        f"lists of {', '.join(SAMPLERS)} (empty only with nll=true)"),
    "n": rules.SCORED_COUNT,
    "real_n": rules.SCORED_COUNT,
    "resamples": rules.RESAMPLES,
    "steps": COUNT_LISTS,
    "nfe": NFE_BUDGETS,
    "spacings": Allowed(lambda v: v is None or (is_list(v) and len(v) > 0 and all(s in rules.SPACINGS for s in v)),
                        f"null or non-empty lists of {', '.join(rules.SPACINGS)}"),
    "wandb": rules.BOOLEAN,
    "wandb_project": LOGGER_RULES["logger.wandb.project"],
    "guidance_scales": rules.list_of(number(0), non_empty=True),
    "data_dir": rules.OPTIONAL_PATH,
    "inception_weights": rules.OPTIONAL_PATH,
    "feature_net.cache_dir": rules.OPTIONAL_PATH,
    "feature_net.epochs": integer(1, special=(None,)),
    "nll": rules.BOOLEAN,
    "nll_n": integer(1),
    "nll_steps": integer(2, special=(None,)),  # at most T, checked once the run is read
    "nll_variance": one_of(*rules.FIXED_VARIANCES),
    "nll_clip_denoised": rules.BOOLEAN,
    "nll_ode": rules.BOOLEAN,
    "nll_ode_n": integer(1),
    "nll_ode_tolerance": number(0, 0.1, lo_open=True),
}
VIZ_RULES = {
    "ckpt": rules.PATH,
    "out": rules.OPTIONAL_PATH,
    "seed": integer(0),
    "steps": EVALUATE_RULES["steps"],
    "samplers": Allowed(lambda v: is_list(v) and len(v) > 0 and all(s in SAMPLERS for s in v),
                        f"non-empty lists of {', '.join(SAMPLERS)}"),
    "ema": rules.BOOLEAN,
    "n_seeds": rules.IMAGE_COUNT,
}
FEATURE_NET_RULES = {
    "data_dir": rules.PATH,
    "cache_dir": rules.OPTIONAL_PATH,
    "epochs": integer(1, special=(None,)),
    "batch_size": integer(1, special=(None,)),
    "lr": number(0, lo_open=True, special=(None,)),
    "num_features": integer(1, special=(None,)),
    "seed": integer(0, special=(None,)),
    "flip": one_of(True, False, None),
} | GENERIC_RULES | DATASET_RULES | PATH_RULES


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=MISSING, throw_on_resolution_failure=True)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def leaves(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """(dotted key, node) of every value of `cfg` but Hydra's own: scalars and lists (a list is one value)."""
    for key in cfg:
        node = cfg._get_node(key)
        if not prefix and key == "hydra":
            continue
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_interpolation():
            yield from leaves(node, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", node


def is_reference(node: Node) -> bool:
    """A leaf `${other.key}` that repeats another key's value: that key's rule checks it."""
    return node._is_interpolation() and bool(REFERENCE.match(str(node._value())))


def rule_for(key: str, rules_by_key: dict[str, Allowed]) -> Allowed | None:
    """The rule of `key`: its own, else the first pattern (`logger.*.save_dir`) it matches; None if it has none."""
    if key in rules_by_key:
        return rules_by_key[key]
    return next((rule for pattern, rule in rules_by_key.items() if "*" in pattern and fnmatch(key, pattern)), None)


def unruled(cfg: DictConfig, rules_by_key: dict[str, Allowed]) -> list[str]:
    """The values of `cfg` that no rule checks (neither their own nor, for a reference, that of the key it
    repeats): a key added to conf/ without a rule shows up here (tests/test_config_rules.py)."""
    return [key for key, node in leaves(cfg) if not is_reference(node) and rule_for(key, rules_by_key) is None]


def check(cfg: DictConfig, rules_by_key: dict[str, Allowed]) -> None:
    """Every value of `cfg` by its rule in `rules_by_key` (see `rule_for`); references are checked where they
    point, and keys with no rule (a user's `+callbacks.x=…`) are left to what uses them."""
    for key, node in leaves(cfg):
        if not is_reference(node) and (rule := rule_for(key, rules_by_key)) not in (None, rules.ANY):
            rule.check(key, _select(cfg, key))


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
    rules.T.check("T", cfg.T)
    for key in TRAIN_STEP_COUNTS:  # first: their message names T
        steps = _select(cfg, key)
        if steps is not MISSING:
            rules.check_step_counts(key, steps, cfg.T)
    check(cfg, TRAIN_RULES)
    check_steps_or_nfe(cfg, "sampling.steps", "sampling.nfe")
    rules.check_terminal_snr(cfg.get("prediction"), _select(cfg, "schedule.zero_terminal_snr") is True)
    rules.check_loss(_select(cfg, "model.learn_sigma"), cfg.get("loss"), cfg.get("loss_weighting"))
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
    if cfg.nll_ode and not cfg.nll:
        raise ConfigError("nll_ode=true: allowed only with nll=true (the ODE likelihood is reported beside the bound)")
    if not cfg.samplers and not cfg.nll:
        raise ConfigError("samplers=[]: allowed only with nll=true (otherwise there is nothing to evaluate); "
                          f"allowed samplers are {', '.join(SAMPLERS)}")


def check_viz_config(cfg: DictConfig) -> None:
    """`python -m diffusion_lab.viz`'s config (step counts above the run's T are skipped, with a message)."""
    find_checkpoint(str(cfg.ckpt))
    check(cfg, VIZ_RULES)


def check_feature_net_config(cfg: DictConfig) -> None:
    """`python -m diffusion_lab.metrics.feature_net`'s config."""
    check(cfg, FEATURE_NET_RULES)
