"""A callback that kills its own process with SIGKILL at a given optimizer step: a crash at a known point, for
the resume tests (loaded by train.py through `+callbacks.crash._target_=crash.KillAtStep`)."""

import os
import signal

from pytorch_lightning.callbacks import Callback


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
