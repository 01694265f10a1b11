"""Training: instantiate everything from the composed config, fit, return the final metrics."""

import logging
import os
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from diffusion_lab import interrupts
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


def resume_point(cfg: DictConfig) -> tuple[Path | None, int]:
    """(checkpoint, its optimizer step) to go on from, once read and checked to hold this config's model:
    `cfg.resume`'s, or for a SLURM job requeued after pre-emption (which starts again with the same config in the
    same run directory) the newest of its own; else (None, 0)."""
    source = cfg.get("resume") or requeued_run(cfg)
    if not source:
        return None, 0
    path, _ = find_checkpoint(source, key="resume")
    ckpt = read_checkpoint(path, key="resume")
    check_same_model("resume", path, ckpt, OmegaConf.to_container(cfg.module, resolve=True))
    return path, ckpt["global_step"]


def requeued_run(cfg: DictConfig) -> Path | None:
    """This run's directory when SLURM restarted the job (SLURM_RESTART_COUNT ≥ 1) and it holds a checkpoint."""
    run_dir = Path(cfg.paths.output_dir)
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    if not (restarts.isdigit() and int(restarts) > 0) or not any((run_dir / "checkpoints").glob("*.ckpt")):
        return None
    log.info("SLURM restarted this job (restart %s): going on from its newest checkpoint", restarts)
    return run_dir


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit `cfg.module` on `cfg.dataset` with `cfg.trainer`, its callbacks and loggers; with `cfg.resume`, go on
    from that checkpoint: weights, EMA, optimizer, learning-rate schedule, random states, data position."""
    ckpt_path, step = resume_point(cfg)
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
        with interrupts.stop_on_signals(), leaves_no_process_group():
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
                if module.last_validated_step != trainer.global_step and trainer.limit_val_batches:
                    # Stopped mid-epoch (max_steps, max_time): validate the final (EMA) weights too.
                    trainer.validate(module, datamodule=datamodule, verbose=False)
            except (interrupts.Interrupted, SIGTERMException) as stop:
                raise stopped(stop, trainer, cfg) from None
    finally:
        if any(isinstance(lg, WandbLogger) for lg in loggers):
            wandb.finish()  # so the next job of a multirun starts its own W&B run
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def stopped(stop: SystemExit, trainer: pl.Trainer, cfg: DictConfig) -> SystemExit:
    """What a stop signal ended, as one `interrupts.Interrupted`: training, at a step whose checkpoint the
    Checkpoints callback wrote (then SLURM's pre-emption is passed on: submitit requeues the job), or the
    evaluation after training (Lightning's SIGTERMException comes from the final validation). A second Ctrl-C's
    Interrupted is passed on as it is."""
    signum = interrupts.requested() or signal.SIGTERM
    run_dir = cfg.paths.output_dir
    if trainer.fit_loop.done:
        return interrupts.Interrupted(signum, f"stopped by {interrupts.signal_name(signum)} after training had "
                                      f"ended at optimizer step {trainer.global_step} (checkpoints in "
                                      f"{run_dir}/checkpoints), before its evaluation was done; evaluate it with: "
                                      f"python evaluate.py ckpt={run_dir}")
    if isinstance(stop, interrupts.Interrupted):
        return stop
    interrupts.pass_on_preemption()
    return interrupts.Interrupted(signum, f"stopped by {interrupts.signal_name(signum)} at optimizer step "
                                  f"{trainer.global_step}, checkpoint written; go on with: python train.py "
                                  f"resume={run_dir}")
