"""Every value of every config has a rule: the composed configs of train.py (with each option of each group),
sample.py, evaluate.py, viz and the feature net, leaf by leaf. A key added to conf/ without a rule fails here."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from diffusion_lab import config_checks
from diffusion_lab.config import CONFIG_DIR, options

GROUPS = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name != "hydra")
PRIMARY_GROUPS = {next(iter(entry)) for entry in OmegaConf.load(Path(CONFIG_DIR) / "config.yaml").defaults
                  if isinstance(entry, DictConfig)}  # the groups of config.yaml's defaults list
COMMANDS = {  # config name: (its rules, the overrides it needs to compose)
    "sample": (config_checks.SAMPLE_RULES, ["ckpt=run"]),
    "evaluate": (config_checks.EVALUATE_RULES, ["ckpt=run"]),
    "viz": (config_checks.VIZ_RULES, ["ckpt=run"]),
    "feature_net": (config_checks.FEATURE_NET_RULES, []),
}


def composed(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def train_configs():
    """train.py's config at its defaults and with each option of each group in turn."""
    yield "defaults", composed("config", [])
    for group in GROUPS:
        add = "" if group in PRIMARY_GROUPS else "+"  # a group outside config.yaml's defaults (step_study_model)
        for option in options(group):
            yield f"{group}={option}", composed("config", [f"{add}{group}={option}"])


def test_every_value_of_train_configs_has_a_rule():
    missing, count = {}, set()
    for name, cfg in train_configs():
        count |= {key for key, _ in config_checks.leaves(cfg)}
        if keys := config_checks.unruled(cfg, config_checks.TRAIN_RULES):
            missing[name] = keys
    assert not missing, f"values with no rule in config_checks.TRAIN_RULES: {missing}"
    assert len(count) > 150  # the model, schedule, sampler, trainer, logger and callback groups are all in


@pytest.mark.parametrize("name", COMMANDS)
def test_every_value_of_the_other_commands_has_a_rule(name):
    rules_by_key, overrides = COMMANDS[name]
    cfg = composed(name, overrides)
    assert config_checks.unruled(cfg, rules_by_key) == []


def test_references_and_patterns_find_their_rules():
    cfg = composed("config", ["logger=tensorboard"])
    nodes = dict(config_checks.leaves(cfg))
    assert config_checks.is_reference(nodes["callbacks.quality.n"])  # ${quality.n}: checked there
    assert not config_checks.is_reference(nodes["sampling.steps"])  # a resolver: checked by its own rule
    assert config_checks.rule_for("logger.tensorboard.save_dir", config_checks.TRAIN_RULES) is not None
    assert config_checks.rule_for("model.not_a_key", config_checks.TRAIN_RULES) is None
