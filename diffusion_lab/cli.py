"""Command-line entry points: compose the config with Hydra, check it, call one function of the package."""

import functools
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, read_write

import diffusion_lab.resolvers  # noqa: F401  (registers the resolvers that conf/ uses)
from diffusion_lab import config_checks, interrupts
from diffusion_lab.config import CONFIG_DIR
from diffusion_lab.errors import ConfigError, causes, one_line_errors
from diffusion_lab.files import run_lock
from diffusion_lab.resume import resume_command


def entry_point(config_name: str, command: Callable[[list[str]], list[str]] = list):
    """Run a `hydra.main` function of conf/<config_name>.yaml on `command(sys.argv)`, with Hydra's own errors
    (raised, not printed, with HYDRA_FULL_ERROR) turned into one line as well."""

    def wrap(main):
        @functools.wraps(main)
        def run():
            os.environ.setdefault("HYDRA_FULL_ERROR", "1")
            primary = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml"))
            with one_line_errors({k: v for k, v in primary.items() if k not in ("defaults", "hydra")}):
                sys.argv = command(sys.argv)
                return main()

        return run

    return wrap


def hydra_command(config_name: str, check: Callable[[DictConfig], None], work: Callable[[DictConfig], object] | str):
    """The command of conf/<config_name>.yaml: compose it from the command line, `check` it, then call `work`
    on it, any error a user can fix reported in one line. `work` may be given as the dotted path of a function,
    imported only once the config has passed its checks (torch takes seconds to import; a typo should not)."""

    def main(cfg: DictConfig):
        with one_line_errors(), interrupts.stop_on_signals():
            check(cfg)
            try:
                return (get_method(work) if isinstance(work, str) else work)(cfg)
            except interrupts.Interrupted as stop:
                raise interrupts.Interrupted(stop.signum, f"{stop.message}; nothing was written (the outputs are "
                                             "written once every image is drawn): run the same command again") from None

    main.__name__ = main.__qualname__ = f"{config_name}_main"
    return entry_point(config_name)(hydra.main(version_base="1.3", config_path=CONFIG_DIR,
                                               config_name=config_name)(main))


@contextmanager
def no_run_dir_after_bad_config(cfg: DictConfig):
    """A start stopped by a ConfigError before it trained leaves nothing behind: Hydra creates the run directory
    with its .hydra folder and log before the config is checked, Lightning adds its loggers' files when fitting
    starts. A run that logged metrics or wrote a checkpoint keeps them; a resumed run's directory keeps all
    but this start's config."""
    try:
        yield
    except Exception as err:
        if not any(isinstance(cause, ConfigError) for cause in causes(err)):
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


@entry_point("config", resume_command)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def train_main(cfg: DictConfig) -> float | None:
    """Trains one run; returns its final `val/fid@<quality.steps>` (or None) for sweepers that optimise it."""
    relaunch_this_job_only()
    with one_line_errors(), no_run_dir_after_bad_config(cfg):
        config_checks.check_train_config(cfg)
        train = get_method("diffusion_lab.train.train")  # imported once the values are known good (torch: seconds)
        with run_lock(cfg.paths.output_dir, "resume" if cfg.get("resume") else "hydra.run.dir"):
            metrics = train(cfg)
    return metrics.get(f"val/fid@{cfg.quality.steps}")


sample_main = hydra_command("sample", config_checks.check_sample_config, "diffusion_lab.sample.sample_run")
evaluate_main = hydra_command("evaluate", config_checks.check_evaluate_config, "diffusion_lab.evaluate.evaluate_run")
