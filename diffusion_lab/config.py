"""The config folder, conf/, and the options of its groups: the one registry of samplers and schedules."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_lab.errors import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the repository's conf/ (editable install)
CONFIG_GROUPS = frozenset(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    """The options of a config group: the names of conf/<group>/*.yaml, sorted."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


SAMPLERS = options("sampler")
SCHEDULES = options("schedule")


def option_config(group: str, name: str) -> DictConfig:
    """conf/<group>/<name>.yaml as it is on disk (interpolations unresolved); ConfigError for an unknown name."""
    allowed = options(group)
    if name not in allowed:
        raise ConfigError(f"{group}={name}: no such option; allowed values are {', '.join(allowed)}")
    cfg = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml")
    if "defaults" not in cfg:
        return cfg
    # A preset that extends options of its own group (`defaults: [base, _self_]`), merged as Hydra would.
    bases = [option_config(group, entry) for entry in cfg.defaults if entry != "_self_"]
    return OmegaConf.merge(*bases, {k: v for k, v in cfg.items() if k != "defaults"})


def build_option(group: str, name: str, **kwargs):
    """What conf/<group>/<name>.yaml builds, with `kwargs` in place of its own values (e.g. `T=` for a schedule):
    a sampler option gives its partial sampler, `factory(diffusion, steps=K)`."""
    return instantiate(option_config(group, name), **kwargs)
