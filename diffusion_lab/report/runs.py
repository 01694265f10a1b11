"""Run directories as the report needs them: which runs there are, and what each one holds."""

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from diffusion_lab.config import CONFIG_GROUPS
from diffusion_lab.errors import ConfigError
from diffusion_lab.resolvers import short_override
from diffusion_lab.resume import override_key

CHOICE_GROUPS = ("dataset", "schedule", "model", "sampler", "experiment")


@dataclass
class Run:
    """What one run directory holds, as the report needs it."""

    path: Path
    name: str
    status: str  # "finished" or "failed" (no summary.json: killed, crashed, or still running)
    reason: str = ""
    choices: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    quality: dict[tuple[str, int], dict] = field(default_factory=dict)  # (sampler, steps) -> metrics
    grids: dict[str, Path] = field(default_factory=dict)  # "ddim-50" -> final grid


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Every run directory (one holding .hydra/config.yaml) at or under `paths`, in job order."""
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"{path}: no such run or multirun directory")
        found += [p.parent.parent for p in sorted(path.glob("**/.hydra/config.yaml"))]
    runs = list(dict.fromkeys(found))
    if not runs:
        raise ConfigError(f"{', '.join(map(str, paths))}: no run directories (folders with .hydra/config.yaml)")

    def job_order(p: Path):
        number = re.match(r"(\d+)-", p.name)
        return (str(p.parent), int(number.group(1)) if number else -1, p.name)

    return sorted(runs, key=job_order)


def read_choices(run_dir: Path) -> dict[str, str]:
    """The config groups' choices, T, and every plain command-line override (by its last key)."""
    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
    choices = {g: str(hydra_cfg.runtime.choices.get(g)) for g in CHOICE_GROUPS if hydra_cfg.runtime.choices.get(g)}
    choices["T"] = str(OmegaConf.load(run_dir / ".hydra" / "config.yaml").get("T"))
    for override in hydra_cfg.overrides.task:
        key = override_key(override)
        if key not in CONFIG_GROUPS and key != "T":
            name, _, value = short_override(override).partition("=")
            choices[name] = value or "removed"
    return choices


def read_metrics(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train loss per logged step, val loss per validation) from csv/metrics.csv."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f))

    def series(key: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]

    return series("train/loss_step"), series("val/loss")


def read_quality(run_dir: Path, summary: dict) -> dict[tuple[str, int], dict]:
    """Quality per (sampler, steps): the end-of-training evaluation, then evaluate.py's (newest last wins)."""
    rows = list(summary.get("quality", {}).get("results", []))
    for eval_json in sorted(run_dir.glob("eval*/eval.json"), key=lambda p: p.stat().st_mtime):
        rows += json.loads(eval_json.read_text()).get("results", [])
    return {(r["sampler"], int(r["steps"])): r for r in rows}


def display_name(run_dir: Path) -> str:
    """`#3` for job 3 of a multirun (its choices have columns of their own), else the folder's name."""
    number = re.match(r"(\d+)-", run_dir.name)
    return f"#{number.group(1)}" if number and (run_dir.parent / "multirun.yaml").exists() else run_dir.name


def read_run(run_dir: Path) -> Run:
    """One run directory as a Run: its choices, summary, losses, quality and final sample grids. A run without
    summary.json, or with an unreadable config, is still returned, as failed, with the reason."""
    run = Run(path=run_dir, name=display_name(run_dir), status="finished")
    try:
        run.choices = read_choices(run_dir)
    except Exception as err:  # an unreadable config: still listed, as failed
        run.status, run.reason = "failed", f"unreadable .hydra config ({type(err).__name__})"
        return run
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        run.summary = json.loads(summary_path.read_text())
    else:
        run.status, run.reason = "failed", "no summary.json: killed, crashed or still running"
        errors = [line for line in _read_text(run_dir / "train.log").splitlines() if "Error" in line]
        if errors:
            run.reason += f"; last error: {errors[-1].strip()[:200]}"
    run.train_loss, run.val_loss = read_metrics(run_dir)
    run.quality = read_quality(run_dir, run.summary)
    full_chain = f"ddpm-{run.choices.get('T')}"
    for png in sorted((run_dir / "samples").glob("final_*.png")):
        label = png.stem.removeprefix("final_")
        if label != "compare":
            run.grids["ddpm-T" if label == full_chain else label] = png  # one column across runs of any T
    return run


def grid_order(label: str) -> tuple[float, str]:
    """Sort key of a grid label (`ddim-10`): step counts ascending, the full chain (`ddpm-T`) last."""
    sampler, _, steps = label.rpartition("-")
    return (int(steps) if steps.isdigit() else math.inf, sampler)


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
