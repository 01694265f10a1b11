"""Experiment loggers: W&B that never blocks on a login prompt and resumes its run; a CSV logger that resumes."""

import csv
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from diffusion_lab.files import write_atomic


def wandb_mode() -> str:
    """`WANDB_MODE` if set; else "online" when an API key is configured (WANDB_API_KEY or the netrc entry
    that `wandb login` writes), else "offline", so runs never wait on a prompt and can be synced later."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


def wandb_logger(project: str, name: str, save_dir: str, **kwargs) -> WandbLogger:
    """A WandbLogger writing under `save_dir`/wandb, offline unless an account is configured. With the `id` of a
    run that exists (`resume=`), it continues that run (W&B's resume="allow")."""
    mode = wandb_mode()
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=mode == "offline", mode=mode,
                       resume="allow", **kwargs)


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it appends to an existing metrics.csv (a resumed run) with that file's
    columns, where Lightning's deletes it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class CSVLogger(pl_loggers.CSVLogger):
    """Lightning's CSVLogger over `AppendingWriter`, with `rewind` for resumed runs."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def rewind(self, step: int) -> None:
        """Drop the rows logged at `step` or later: a run resumed from the checkpoint of step `step` logs them
        again, so that its metrics file has every step exactly once."""
        path = Path(self.log_dir) / AppendingWriter.NAME_METRICS_FILE
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = reader.fieldnames or [], [r for r in reader if int(r["step"]) < step]

        def write(out):
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

        write_atomic(path, write)
