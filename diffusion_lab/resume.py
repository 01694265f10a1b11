"""The command line that resumes a run, and where Hydra puts a resumed run's files."""

import time
from pathlib import Path

from omegaconf import OmegaConf

from diffusion_lab.checkpoints import find_checkpoint
from diffusion_lab.errors import ConfigError

_RESUME_STAMP = time.strftime("%Y%m%d-%H%M%S")  # one per process: Hydra may resolve the folder more than once


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
