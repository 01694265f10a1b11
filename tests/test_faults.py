"""What real runs meet besides a crash: a stop signal during the evaluation after training, Ctrl-C twice, a full
disk, bad data files, two processes in one run directory, a SLURM requeue; and the time-based checkpoints.
(A stop signal during training, and its exact resume, is in test_resume.py.)"""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_TRAIN, make_tiny_dataset, one_line_error, run_cli, write_idx
from diffusion_lab import interrupts
from diffusion_lab.checkpoints import read_checkpoint
from diffusion_lab.cli import sample_main
from diffusion_lab.data import load_split
from diffusion_lab.errors import ConfigError, StorageError
from diffusion_lab.files import run_lock, write_atomic, write_json_atomic
from diffusion_lab.generation import generate
from diffusion_lab.train import requeued_run

CRASH = {"PYTHONPATH": str(ROOT / "tests")}  # for tests/crash.py's callbacks
SHORT = [*TINY_TRAIN, "dataset.batch_size=8", "trainer.limit_train_batches=5", "trainer.limit_val_batches=1",
         "trainer.max_steps=12", "trainer.num_sanity_val_steps=0", "callbacks.checkpoint.every_n_train_steps=3",
         "~callbacks.figures", "logger=csv"]


def the_run(log_dir: Path) -> Path:
    (run,) = [p.parent for p in log_dir.glob("*/*/.hydra")]
    return run


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.stem.removeprefix("step")) for p in (run / "checkpoints").glob("step*.ckpt"))


# Signals ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_in_the_evaluation_after_training_stops_it_at_the_next_batch(tiny_data, tmp_path):
    # Sent at the last step: training ends, then the final grids and 4,000-image evaluation would take minutes.
    result = run_cli("train.py", *SHORT, "quality.final_steps=[50]", "quality.final_n=4000",
                     "+callbacks.crash._target_=crash.SignalAtStep", "+callbacks.crash.step=12",
                     f"paths.log_dir={tmp_path}", data=tiny_data, env=CRASH, timeout=120)
    run = the_run(tmp_path)
    assert result.returncode == 143, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"stopped by SIGTERM after training had ended at optimizer step 12 (checkpoints in {run}/checkpoints), "
        f"before its evaluation was done; evaluate it with: python evaluate.py ckpt={run}")
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 12
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert not (run / "samples").exists() or not any((run / "samples").iterdir())


@pytest.mark.slow
def test_under_ddp_a_signal_to_rank_0_stops_every_rank_at_the_same_step(tiny_data, tmp_path):
    result = run_cli("train.py", *SHORT, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                     "dataset.batch_size=4", "~callbacks.quality", "+callbacks.crash._target_=crash.SignalAtStep",
                     "+callbacks.crash.step=2", "+callbacks.crash.rank=0", f"paths.log_dir={tmp_path}",
                     data=tiny_data, env=CRASH)
    run = the_run(tmp_path)
    assert result.returncode == 143, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("stopped by")] == [
        f"stopped by SIGTERM at optimizer step 2, checkpoint written; go on with: python train.py resume={run}"]
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2  # rank 1 did not go on alone


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tiny_data, tmp_path):
    result = run_cli("train.py", *SHORT, "+callbacks.crash._target_=crash.SignalAtStep", "+callbacks.crash.step=7",
                     "+callbacks.crash.name=SIGINT", "+callbacks.crash.times=2", f"paths.log_dir={tmp_path}",
                     data=tiny_data, env=CRASH)
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == ("stopped at once by a second Ctrl-C; nothing was written "
                                                      "after the newest checkpoint")
    assert checkpoint_steps(the_run(tmp_path))[-1] == 6  # the every-3-steps one: none for step 7


@pytest.mark.slow
def test_sample_py_stopped_by_sigterm_exits_143_and_writes_nothing(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "samples"
    env = {**os.environ, "DIFFUSION_LAB_DATA": str(tiny_data)}
    command = [sys.executable, str(ROOT / "sample.py"), f"ckpt={tiny_run}", "n=100000", "steps=50",
               "progress=false", "compile=false", f"out_dir={out}"]  # minutes of sampling
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        watchdog = threading.Timer(180, process.kill)  # a stop that never comes fails the test, not the suite
        watchdog.start()
        lines = []
        for line in process.stdout:  # the batch size is logged just before the first batch
            lines.append(line)
            if "sampling in batches of" in line:
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        watchdog.cancel()
    assert process.returncode == 143, "".join(lines) + rest
    assert rest.strip().splitlines()[-1] == ("stopped by SIGTERM while sampling; nothing was written (the outputs "
                                             "are written once every image is drawn): run the same command again")
    assert not out.exists()


def test_a_stop_request_ends_sampling_before_its_next_batch():
    class Counting:
        calls = 0

        def sample(self, model, x, noise, progress=False):
            Counting.calls += 1
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first batch is drawn
            return x.clamp(-1, 1)

    before = signal.getsignal(signal.SIGTERM)
    with interrupts.stop_on_signals(), pytest.raises(interrupts.Interrupted) as stop:
        generate(None, Counting(), 10, (1, 4, 4), seed=0, batch_size=2, device="cpu")
    assert (Counting.calls, stop.value.code, stop.value.message) == (1, 143, "stopped by SIGTERM while sampling")
    assert interrupts.requested() is None  # forgotten once the block ends
    assert signal.getsignal(signal.SIGTERM) is before  # and the old handler is back


def test_slurm_preemption_is_handed_to_submitit_once_the_checkpoint_is_written(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    requeued = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))  # submitit's stand-in
    try:
        with interrupts.stop_on_signals():
            os.kill(os.getpid(), signal.SIGUSR2)
            assert interrupts.requested() == signal.SIGUSR2 and requeued == []  # only recorded, training goes on
            interrupts.pass_on_preemption()  # what train.stopped does after the checkpoint
        assert requeued == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_requeued_slurm_job_goes_on_from_its_own_newest_checkpoint(tmp_path, monkeypatch, compose_cfg):
    cfg = compose_cfg()
    run = Path(cfg.paths.output_dir)
    assert requeued_run(cfg) is None  # not restarted
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_run(cfg) is None  # restarted before its first checkpoint: starts afresh
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step0000100.ckpt").write_bytes(b"")
    assert requeued_run(cfg) == run


# Checkpoints by time -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_checkpoints_are_written_every_n_minutes_too_within_keep_k(tiny_data, tmp_path):
    # The step interval never comes (1,000); a 1 ms interval makes every step's checkpoint due by time.
    result = run_cli("train.py", *SHORT, "callbacks.checkpoint.every_n_train_steps=1000",
                     "callbacks.checkpoint.every_n_minutes=0.00001", "~callbacks.quality", "~callbacks.sample_grid",
                     f"paths.log_dir={tmp_path}", data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    run = the_run(tmp_path)
    assert checkpoint_steps(run) == [10, 11, 12]  # the newest three, each step due by time
    assert list(run.rglob("*.tmp")) == []


# Storage ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_write_keeps_the_previous_file_leaves_no_temporary_and_says_so(tmp_path, code):
    path = tmp_path / "eval.json"
    write_json_atomic(path, {"fid": 1.0})
    before = path.read_bytes()

    def fails_midway(f):
        f.write("{\"fid\": 2.")
        f.flush()
        raise OSError(code, os.strerror(code))

    with pytest.raises(StorageError) as err:
        write_atomic(path, fails_midway)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    message = str(err.value)
    assert message.startswith(f"cannot write {path}: {os.strerror(code)} (needs at least ") and "MiB free" in message
    assert "\n" not in message


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_stops_the_run_in_one_line_and_keeps_the_last_one(tiny_data, tmp_path):
    result = run_cli("train.py", *SHORT, "~callbacks.quality", "+callbacks.full._target_=crash.FullDiskAtStep",
                     "+callbacks.full.step=6", f"paths.log_dir={tmp_path}", data=tiny_data, env=CRASH)
    run = the_run(tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 4 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0].startswith(f"error: cannot write {run}/checkpoints/step0000006.ckpt: No space left on device")
    assert checkpoint_steps(run) == [3, 5]  # the full disk's checkpoint is not there, not even in part
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5  # whole and readable
    assert list(run.rglob("*.tmp")) == [] and list(run.rglob(".*.ckpt.*")) == []


def test_a_sample_folder_that_cannot_be_finished_is_not_left_half_written(tiny_run, run_in_process, monkeypatch,
                                                                         tmp_path):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("diffusion_lab.images.save_image", full_disk)  # the grid, after samples.npz
    out = tmp_path / "samples"
    result = run_in_process(sample_main, f"ckpt={tiny_run}", "steps=2", "n=2", "progress=false", f"out_dir={out}")
    assert result.returncode == 4, result.stderr[-2000:]
    assert f"error: cannot write {out}/grid.png: No space left on device" in result.stderr
    assert not out.exists()  # samples.npz was written, and went with its folder


# Data files ------------------------------------------------------------------------------------------------------

def corrupt(root: Path, file: str, how) -> Path:
    path = root / "MNIST" / "raw" / file
    path.write_bytes(how(path.read_bytes()))
    return path


@pytest.mark.parametrize("file, how, expected", [
    ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2], "bytes, but its header declares"),
    ("train-images-idx3-ubyte", lambda b: struct.pack(">I", 0x0D03) + b[4:], "magic number 0x00000d03, expected "
                                                                            "0x00000803"),
    ("train-images-idx3-ubyte", lambda b: b[:6], "too short for an IDX header"),
    ("train-labels-idx1-ubyte", lambda b: b[:-5], "bytes, but its header declares"),
    ("train-labels-idx1-ubyte", lambda b: b[:-1] + b"\x0c", "a label above 9"),
])
def test_a_bad_data_file_is_named_with_what_is_wrong(tmp_path, file, how, expected):
    make_tiny_dataset(tmp_path, n_train=32, n_test=8)
    path = corrupt(tmp_path, file, how)
    with pytest.raises(ConfigError) as err:
        load_split("mnist", tmp_path, train=True, download=False)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_labels_that_do_not_match_their_images_are_refused(tmp_path):
    make_tiny_dataset(tmp_path, n_train=32, n_test=8)
    folder = tmp_path / "MNIST" / "raw"
    write_idx(tmp_path / "other", "train", np.zeros((31, 28, 28), np.uint8), np.zeros(31, np.uint8))
    (folder / "train-labels-idx1-ubyte").write_bytes((tmp_path / "other" / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(ConfigError, match="31 labels for the 32 images of train-images-idx3-ubyte"):
        load_split("mnist", tmp_path, train=True, download=False)


@pytest.mark.slow
def test_train_stops_on_a_truncated_data_file_in_one_line(tmp_path):
    make_tiny_dataset(tmp_path / "data", n_train=32, n_test=8)
    path = corrupt(tmp_path / "data", "t10k-images-idx3-ubyte", lambda b: b[:-100])
    result = run_cli("train.py", *SHORT, f"paths.log_dir={tmp_path / 'runs'}", data=tmp_path / "data")
    assert one_line_error(result).startswith(f"error: {path}: ")


# Run directories -------------------------------------------------------------------------------------------------

def test_a_second_resume_into_a_run_in_use_is_refused_in_one_line(tiny_run, tiny_data, tmp_path):
    with run_lock(tiny_run, "resume"):
        result = run_cli("train.py", f"resume={tiny_run}", "trainer.max_epochs=3", data=tiny_data)
    line = one_line_error(result)
    assert line.startswith(f"error: resume={str(tiny_run)!r}: this run directory is in use by process {os.getpid()}")
    assert not list((tiny_run / ".hydra").glob("resume-*"))  # the refused start left no config behind


def test_a_dead_process_does_not_hold_its_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from diffusion_lab.files import run_lock\n"
                               f"with run_lock({str(tmp_path)!r}, 'resume'):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"in use by process {holder.pid};"):
        with run_lock(tmp_path, "resume"):
            pass
    holder.kill()
    holder.wait()
    with run_lock(tmp_path, "resume"):  # the lock died with its process: nothing stale to delete by hand
        assert list(tmp_path.iterdir()) == []  # and it never wrote a file


@pytest.mark.slow
def test_a_long_sweep_leaves_no_file_thread_or_process_behind(tiny_data, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak_sweep.py"), "--jobs", "4",
                             "--data", str(tiny_data), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    soak = json.loads(result.stdout)
    assert soak["jobs_started"] == soak["run_folders"] == soak["folders_with_metrics"] == 4
    for what in ("fds", "threads", "children"):  # what jobs 1 … 3 left open, against job 1 alone
        assert soak["last_job"][what] == soak["second_job"][what], what
    assert soak["last_job"]["children"] == 0
