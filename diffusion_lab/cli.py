"""Command-line entry points: compose the config with Hydra, call one function of the package."""

import difflib
import functools
import os
import re
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, read_write
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from diffusion_lab import validation
from diffusion_lab.checkpoints import resume_command
from diffusion_lab.config import CONFIG_DIR  # importing it registers the resolvers that conf/ uses
from diffusion_lab.errors import ConfigError, TrainingError

EXIT_STATUS = {ConfigError: 2, TrainingError: 3}


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def error_line(err: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for the errors a user can fix from the command line, else None: ours,
    a missing mandatory value, and Hydra's (unknown key, unknown group option, unparsable override)."""
    for cause in _chain(err):
        for kind, status in EXIT_STATUS.items():
            if isinstance(cause, kind):
                return str(cause), status
        if isinstance(cause, MissingMandatoryValue):
            return f"{cause.full_key}: missing; give {cause.full_key}=<value>", 2
        if isinstance(cause, MissingConfigException) and cause.options:
            group, _, choice = (cause.missing_cfg_file or "").rpartition("/")
            return f"{group}={choice}: no such option; allowed values are {', '.join(cause.options)}", 2
        if isinstance(cause, OverrideParseException):
            reason = cause.message.splitlines()[1 if cause.message.startswith("Error parsing") else 0]
            return f"{cause.override}: cannot parse this override ({reason}); write key=value", 2
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.parent_node is not None and cause.key is not None:
            override = re.search(r"'([^']+)'", str(err)) if isinstance(err, ConfigCompositionException) else None
            allowed = [k for k in cause.parent_node.keys() if k not in ("hydra", "_target_", "_partial_")]
            near = difflib.get_close_matches(str(cause.key), allowed, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            return (f"{override.group(1) if override else cause.full_key}: unknown key {cause.key!r}{hint}; "
                    f"allowed keys are {', '.join(allowed)}"), 2
    return None


@contextmanager
def one_line_errors():
    """Turn an error a user can fix (see `error_line`) into `error: <message>` on stderr and a non-zero exit
    status (2: a bad input, 3: training went wrong); anything else keeps its traceback."""
    try:
        yield
    except Exception as err:
        found = error_line(err)
        if found is None:
            raise
        print(f"error: {found[0]}", file=sys.stderr)
        raise SystemExit(found[1]) from None


def entry_point(command: Callable[[list[str]], list[str]] = list):
    """Run a `hydra.main` function on `command(sys.argv)`, with Hydra's own errors (raised, not printed, with
    HYDRA_FULL_ERROR) turned into one line as well."""

    def wrap(main):
        @functools.wraps(main)
        def run():
            os.environ.setdefault("HYDRA_FULL_ERROR", "1")
            with one_line_errors():
                sys.argv = command(sys.argv)
                return main()

        return run

    return wrap


@contextmanager
def no_run_dir_after_bad_config(cfg: DictConfig):
    """A start stopped by a ConfigError before it trained leaves nothing behind: Hydra creates the run directory
    with its .hydra folder and log before the config is checked, Lightning adds its loggers' files when fitting
    starts. A run that logged metrics or wrote a checkpoint keeps them; a resumed run's directory keeps all
    but this start's config."""
    try:
        yield
    except Exception as err:
        if not any(isinstance(cause, ConfigError) for cause in _chain(err)):
            raise
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        if cfg.get("resume"):
            if hydra_cfg.output_subdir and hydra_cfg.output_subdir != ".hydra":
                shutil.rmtree(run_dir / hydra_cfg.output_subdir, ignore_errors=True)
        elif not (run_dir / "checkpoints").exists() and not any(run_dir.glob("*/metrics.csv")):
            shutil.rmtree(run_dir, ignore_errors=True)
            with suppress(OSError):
                run_dir.parent.rmdir()  # the date folder, if this was its only run
        raise


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


@entry_point(resume_command)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def train_main(cfg: DictConfig) -> float | None:
    """Trains one run; returns its final `val/fid@<quality.steps>` (or None) for sweepers that optimise it."""
    relaunch_this_job_only()
    with one_line_errors(), no_run_dir_after_bad_config(cfg):
        validation.check_train_config(cfg)
        from diffusion_lab.train import train  # heavy imports once the command line and its values are known good

        metrics = train(cfg)
    return metrics.get(f"val/fid@{cfg.quality.steps}")


@entry_point()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def sample_main(cfg: DictConfig) -> None:
    with one_line_errors():
        validation.check_sample_config(cfg)
        from diffusion_lab.sample import sample_run

        sample_run(cfg)


@entry_point()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def evaluate_main(cfg: DictConfig) -> None:
    with one_line_errors():
        validation.check_evaluate_config(cfg)
        from diffusion_lab.evaluate import evaluate_run

        evaluate_run(cfg)
