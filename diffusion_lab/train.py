"""Training: instantiate everything from the composed config, fit, return the final metrics."""

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from diffusion_lab.checkpoints import check_same_model, find_checkpoint, read_checkpoint
from diffusion_lab.loggers import CSVLogger

log = logging.getLogger(__name__)
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def leaves_no_process_group():
    """Undo what Lightning's DDP launcher leaves in this process: the process group, and the variables it
    exports (with LOCAL_RANK set, the next job of a multirun would think it had been launched as a child and
    start no processes of its own)."""
    saved = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def apply_backend_settings(speed: DictConfig) -> None:
    """The process-wide `speed` settings: matmul precision (TF32) and cuDNN autotuning."""
    torch.set_float32_matmul_precision(speed.matmul_precision)
    torch.backends.cudnn.benchmark = speed.cudnn_benchmark


def resume_point(cfg: DictConfig) -> tuple[Path, int]:
    """(checkpoint, its optimizer step) of `cfg.resume`, once read and checked to hold this config's model."""
    path, _ = find_checkpoint(cfg.resume, key="resume")
    ckpt = read_checkpoint(path, key="resume")
    check_same_model("resume", path, ckpt, OmegaConf.to_container(cfg.module, resolve=True))
    return path, ckpt["global_step"]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit `cfg.module` on `cfg.dataset` with `cfg.trainer`, its callbacks and loggers; with `cfg.resume`, go on
    from that checkpoint: weights, EMA, optimizer, learning-rate schedule, random states, data position."""
    ckpt_path, step = resume_point(cfg) if cfg.get("resume") else (None, 0)
    pl.seed_everything(cfg.seed, workers=True)
    apply_backend_settings(cfg.speed)
    module = instantiate(cfg.module)  # builds schedule and network first: bad values fail before any data loads
    datamodule = instantiate(cfg.dataset)
    module.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))  # logged, and stored in checkpoints
    log.info(
        "%s: %s parameters, alphas_cumprod[T-1] = %.3g",
        cfg.run_name,
        f"{sum(p.numel() for p in module.net.parameters()):,}",
        float(module.diffusion.alphas_cumprod[-1]),
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if ckpt_path:
        log.info("resuming from %s (optimizer step %d)", ckpt_path, step)
        for logger in loggers:
            if isinstance(logger, CSVLogger):
                logger.rewind(step)  # the steps after the checkpoint are logged again
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    # The whole data set sits in memory as uint8 tensors: worker processes would only add overhead.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    try:
        with leaves_no_process_group():
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            if module.last_validated_step != trainer.global_step and trainer.limit_val_batches:
                # Stopped mid-epoch (max_steps, max_time): validate the final (EMA) weights too.
                trainer.validate(module, datamodule=datamodule, verbose=False)
    finally:
        if any(isinstance(lg, WandbLogger) for lg in loggers):
            wandb.finish()  # so the next job of a multirun starts its own W&B run
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
