"""Callbacks that kill or signal their own process at a given optimizer step: a crash or a stop at a known point,
for the resume tests (loaded by train.py through `+callbacks.crash._target_=crash.KillAtStep`)."""

import errno
import io
import os
import signal

import torch
from pytorch_lightning.callbacks import Callback


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(Callback):
    """Sends the signal `name` (SIGTERM, SIGINT) to its own process `times` times once optimizer step `step` is
    done: a scheduler's stop, or Ctrl-C pressed once or twice. With `rank`, only that DDP rank is signalled."""

    def __init__(self, step: int, name: str = "SIGTERM", times: int = 1, rank: int | None = None):
        self.step, self.signum, self.times, self.rank = step, getattr(signal, name), times, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class FullDiskAtStep(Callback):
    """From optimizer step `step` on, every `torch.save` in its process fails as on a full disk (ENOSPC) after
    writing half its bytes: the checkpoint due at that step is the first write to meet it."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            save = torch.save

            def full_disk(obj, f, *args, **kwargs):
                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: buffer.tell() // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            torch.save = full_disk
