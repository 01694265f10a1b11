"""Experiment loggers: W&B that never blocks on a login prompt."""

import netrc
import os
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger


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
    """A WandbLogger writing under `save_dir`/wandb, offline unless an account is configured."""
    mode = wandb_mode()
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=mode == "offline", mode=mode, **kwargs)
