"""Command-line entry points: compose the config with Hydra, call one function of the package."""

import sys
from contextlib import contextmanager

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from diffusion_lab.config import CONFIG_DIR  # importing it registers the resolvers that conf/ uses
from diffusion_lab.errors import ConfigError


@contextmanager
def one_line_errors():
    """Turn a ConfigError anywhere in an exception's chain into `error: <message>` and exit status 2."""
    try:
        yield
    except Exception as err:
        cause = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def relaunch_this_job_only() -> None:
    """Under `-m`, Lightning's DDP launcher would start each extra process with this process's argv, which
    re-runs the whole sweep. Point it at this one job instead: its overrides, as a single run
    (`hydra.mode=RUN`, for presets that set MULTIRUN), in this job's directory (Lightning appends
    `hydra.run.dir=<HydraConfig's run.dir>`)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def train_main(cfg: DictConfig) -> float | None:
    """Trains one run; returns its final `val/fid@<quality.steps>` (or None) for sweepers that optimise it."""
    from diffusion_lab.train import train  # heavy imports after Hydra has parsed the command line

    relaunch_this_job_only()
    with one_line_errors():
        metrics = train(cfg)
    return metrics.get(f"val/fid@{cfg.quality.steps}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def sample_main(cfg: DictConfig) -> None:
    from diffusion_lab.sample import sample_run

    with one_line_errors():
        sample_run(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def evaluate_main(cfg: DictConfig) -> None:
    from diffusion_lab.evaluate import evaluate_run

    with one_line_errors():
        evaluate_run(cfg)
