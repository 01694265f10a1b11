"""Command-line entry points: compose the config with Hydra, call one function of the package."""

import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig

import diffusion_lab.config  # noqa: F401  (registers the resolvers that conf/ uses)
from diffusion_lab.errors import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the repository's conf/ (editable install)


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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def train_main(cfg: DictConfig) -> None:
    from diffusion_lab.train import train  # heavy imports after Hydra has parsed the command line

    with one_line_errors():
        train(cfg)


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
