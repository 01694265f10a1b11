"""Runs of a W&B project, read through the W&B API (online), as Run objects beside the local ones."""

from pathlib import Path

from diffusion_lab.errors import ConfigError
from diffusion_lab.report.runs import Run


def wandb_runs(project: str) -> list[Run]:
    """Runs of a W&B project (`entity/project`), from their summaries and logged losses; needs the network."""
    try:
        # Imported here: only --wandb needs it, and importing wandb takes seconds.
        import wandb

        api_runs = list(wandb.Api(timeout=20).runs(project))
    except Exception as err:
        raise ConfigError(f"--wandb {project}: cannot read the project ({str(err).splitlines()[0][:200]})") from None
    runs = []
    for r in api_runs:
        summary = {k: v for k, v in r.summary.items() if not k.startswith("_")}
        history = list(r.scan_history(keys=["trainer/global_step", "train/loss_step"]))
        config = {"T": r.config.get("T"), "dataset": r.config.get("dataset", {}).get("name")}
        choices = {k: str(v) for k, v in config.items() if v is not None}
        run = Run(path=Path(r.url), name=r.name, status="finished" if r.state == "finished" else "failed",
                  reason=f"W&B state {r.state}", summary=summary, choices=choices | {t: "yes" for t in r.tags},
                  train_loss=[(int(h["trainer/global_step"]), float(h["train/loss_step"])) for h in history])
        run.quality = {(q["sampler"], int(q["steps"])): q for q in summary.get("quality", {}).get("results", [])}
        runs.append(run)
    return runs
