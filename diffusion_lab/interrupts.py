"""Stopping at a safe point when asked to: SIGTERM (a scheduler, `timeout`, a container stop), SIGINT (Ctrl-C) and
the SLURM launcher's pre-emption signal.

Inside `stop_on_signals()` such a signal only records the request. Training then writes a checkpoint at its next
optimizer step and sampling stops at its next batch (`check`), by raising `Interrupted`, which exits the command
with status 128 + the signal's number and one line saying how to go on. A second Ctrl-C stops at once.
"""

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_requested: int | None = None  # the signal that asked this process to stop, until stop_on_signals() ends
_previous: dict[int, Callable | int | None] = {}  # the handlers stop_on_signals() replaced


class Interrupted(SystemExit):
    """The run stopped on a signal at a safe point (a SystemExit: no `except Exception` swallows it). `message`
    says where it stopped and how to go on; the exit status is 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.signum, self.message = signum, message


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def preemption_signal() -> int | None:
    """The signal by which SLURM, through submitit, warns a job of pre-emption or of its time limit (USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise); None outside a SLURM job."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").removeprefix("SIG"), None)


def record(signum: int) -> None:
    """Ask this process to stop, as the signal `signum` does (a DDP rank that another rank's signal stops)."""
    global _requested
    _requested = signum


def _request(signum: int, frame) -> None:
    if signum == signal.SIGINT and _requested is not None:
        raise Interrupted(signum, "stopped at once by a second Ctrl-C; nothing was written after the newest "
                          "checkpoint")
    record(signum)
    log.warning("received %s: stopping at the next safe point (a checkpoint at the next optimizer step, or the "
                "next sampling batch)%s", signal_name(signum), "; Ctrl-C again stops at once" if signum ==
                signal.SIGINT else "")


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _requested


def check(doing: str) -> None:
    """Raise `Interrupted` if a stop was requested; `doing` says what stops (e.g. "sampling")."""
    if _requested is not None:
        raise Interrupted(_requested, f"stopped by {signal_name(_requested)} while {doing}")


def stop_signals() -> list[int]:
    """The signals that ask this process to stop: SIGTERM, SIGINT and, in a SLURM job, its pre-emption signal."""
    return [s for s in (signal.SIGTERM, signal.SIGINT, preemption_signal()) if s is not None]


def install() -> None:
    """(Re)install the recording handler on this process's stop signals, over whatever is there now (Lightning
    installs its own SIGTERM handler when fitting starts); main thread only, as Python requires."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in stop_signals():
        signal.signal(signum, _request)


def pass_on_preemption() -> None:
    """Hand a pre-emption request to the handler that was there before (submitit's, which requeues the job and
    exits), once the run has written its checkpoint; nothing if the request was another signal."""
    handler = _previous.get(_requested) if _requested == preemption_signal() else None
    if callable(handler):
        handler(_requested, None)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block, the stop signals only record a request (see `requested` and `check`); afterwards the
    handlers that were there before are back and the request is forgotten."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = stop_signals()
    _previous.update({s: signal.getsignal(s) for s in signals})
    install()
    try:
        yield
    finally:
        for s in signals:
            signal.signal(s, _previous.pop(s))
        _requested = None
