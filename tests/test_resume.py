"""Reliability: a run killed mid-epoch resumes exactly, checkpoints are written atomically, and a non-finite
loss stops training before any checkpoint holds the weights it touched."""

import csv
import hashlib
import json
import signal
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_TRAIN, run_cli
from diffusion_lab.callbacks import AtomicCheckpointIO
from diffusion_lab.resolvers import wandb_id
from diffusion_lab.errors import TrainingError
from diffusion_lab.module import DiffusionModule

# 5 batches an epoch and a checkpoint every 3 steps: the checkpoints at steps 3 and 6 fall mid-epoch, those at 5
# and 10 at epoch ends. Dropout on, so that the global random state matters too.
RESUMABLE = [*TINY_TRAIN, "dataset.batch_size=8", "trainer.limit_train_batches=5", "trainer.limit_val_batches=1",
             "trainer.max_steps=12", "trainer.num_sanity_val_steps=0", "trainer.deterministic=true",
             "model.dropout=0.1", "callbacks.checkpoint.every_n_train_steps=3", "~callbacks.quality",
             "~callbacks.figures", "~callbacks.sample_grid", "logger=wandb", "+logger.csv.flush_logs_every_n_steps=1"]
CRASH_AT_8 = ["+callbacks.crash._target_=crash.KillAtStep", "+callbacks.crash.step=8"]


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def the_run(log_dir: Path) -> Path:
    (run,) = [p.parent for p in log_dir.glob("*/*/.hydra")]
    return run


def wandb_run_ids(run: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}


@pytest.fixture(scope="module")
def whole_run(tiny_data, tmp_path_factory) -> Path:
    """RESUMABLE run to its end without a break: what an interrupted and resumed run must equal."""
    log_dir = tmp_path_factory.mktemp("whole")
    whole = run_cli("train.py", *RESUMABLE, f"paths.log_dir={log_dir}", data=tiny_data)
    assert whole.returncode == 0, whole.stderr[-3000:]
    return the_run(log_dir)


def assert_resumed_exactly(reference: Path, run: Path) -> None:
    """The resumed `run` ends where the uninterrupted `reference` does: the same EMA and raw weights, optimizer
    and schedule state, EMA state and every logged value, each step logged once."""
    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    for weights in ("state_dict", "current_model_state"):  # EMA and raw weights
        assert a[weights].keys() == b[weights].keys()
        assert all(torch.equal(a[weights][k], b[weights][k]) for k in a[weights]), weights
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert a["callbacks"]["EMA"] == b["callbacks"]["EMA"]
    rows = metrics_rows(run)
    assert [r["step"] for r in rows if r["train/loss_step"]] == [str(s) for s in range(12)]  # no gap, no double
    assert rows == metrics_rows(reference)  # every value as well, the epoch means and validation losses too


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_bit_identical(whole_run, tiny_data, tmp_path):
    env = {"PYTHONPATH": str(ROOT / "tests")}  # for crash.KillAtStep
    killed = run_cli("train.py", *RESUMABLE, *CRASH_AT_8, f"paths.log_dir={tmp_path / 'killed'}", data=tiny_data,
                     env=env)
    assert killed.returncode == -9  # SIGKILL: no handler ran
    run = the_run(tmp_path / "killed")
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step0000006.ckpt"  # mid-epoch 1
    assert [r["step"] for r in metrics_rows(run) if r["train/loss_step"]][-1] == "6"  # the checkpoint's step is redone
    first_config = (run / ".hydra" / "config.yaml").read_bytes()

    # The same command line is rebuilt from the run's own record; only the crash is taken out.
    resumed = run_cli("train.py", f"resume={run}", "~callbacks.crash", data=tiny_data, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_exactly(whole_run, run)
    assert (run / ".hydra" / "config.yaml").read_bytes() == first_config  # the resume's config went beside it
    assert len(list((run / ".hydra").glob("resume-*/config.yaml"))) == 1
    assert wandb_run_ids(run) == {wandb_id(str(run))}  # both starts logged to one W&B run
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_checkpoints_the_step_exits_128_plus_it_and_resumes_bit_identical(
        whole_run, tiny_data, tmp_path, signal_name):
    env = {"PYTHONPATH": str(ROOT / "tests")}  # for crash.SignalAtStep
    stopped = run_cli("train.py", *RESUMABLE, "+callbacks.crash._target_=crash.SignalAtStep", "+callbacks.crash.step=7",
                      f"+callbacks.crash.name={signal_name}", f"paths.log_dir={tmp_path / 'stopped'}", data=tiny_data,
                      env=env)
    run = the_run(tmp_path / "stopped")
    assert stopped.returncode == 128 + getattr(signal, signal_name), stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"stopped by {signal_name} at optimizer step 7, checkpoint written; go on with: python train.py resume={run}")
    assert "Traceback" not in stopped.stderr
    # The step the signal came in is checkpointed (between the every-3-steps ones at 6 and 9), within keep-3.
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step0000007.ckpt"
    assert sorted(p.name for p in (run / "checkpoints").glob("step*.ckpt")) == [
        "step0000005.ckpt", "step0000006.ckpt", "step0000007.ckpt"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["optimizer_steps"]) == ("interrupted", 7)
    assert list(run.rglob("*.tmp")) == []

    resumed = run_cli("train.py", f"resume={run}", "~callbacks.crash", data=tiny_data, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_exactly(whole_run, run)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_checkpoints_are_renamed_into_place_only_when_complete(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(3)}, path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    def dies_mid_write(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process stopped while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"w": torch.zeros(3)}, path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


@pytest.mark.slow
def test_a_non_finite_loss_stops_training_in_one_line_before_its_update(tiny_data, tmp_path):
    result = run_cli("train.py", *TINY_TRAIN, "optimizer.lr=1e30", "module.warmup_steps=1", "trainer.max_steps=20",
                     "callbacks.checkpoint.every_n_train_steps=1", "logger=csv", "~callbacks.quality",
                     "~callbacks.figures", f"paths.log_dir={tmp_path}", data=tiny_data)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 3 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert errors[0].startswith("error: train/loss=") and "after optimizer step" in errors[0]
    checkpoints = sorted((the_run(tmp_path) / "checkpoints").glob("step*.ckpt"))
    assert checkpoints, "the steps before the divergence were checkpointed"
    for path in checkpoints:
        ckpt = torch.load(path, weights_only=True)
        assert all(torch.isfinite(w).all() for w in ckpt["current_model_state"].values()), path.name


def test_a_non_finite_loss_is_caught_now_on_the_host_and_before_the_next_checkpoint_elsewhere():
    """On the CPU the loss is read at once; where reading it would wait for the device, the first bad step is
    kept on the device and read before every checkpoint, which is then refused."""
    from diffusion_lab.diffusion import GaussianDiffusion, linear_betas
    from diffusion_lab.models import UNet

    module = DiffusionModule(UNet(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=()),
                             GaussianDiffusion(linear_betas(50)), optimizer=torch.optim.SGD, val_size=4)
    with pytest.raises(TrainingError, match="train/loss=nan"):
        module.watch_finite(torch.tensor(float("nan")), on_host=True)
    module.watch_finite(torch.tensor(1.0), on_host=False)
    module.on_save_checkpoint({})  # all finite so far
    module.watch_finite(torch.tensor(float("inf")), on_host=False)  # no error yet: nothing was read
    with pytest.raises(TrainingError, match="is not finite in the batch after optimizer step 0"):
        module.on_save_checkpoint({})


# At T = 4 the importance sampler is warm once every t has 10 losses (40 samples, step 5 of batches of 8): the
# steps after the crash at 8 draw t from the loss history that the checkpoint at step 6 had to carry.
IMPORTANCE = ["schedule=cosine", "T=4", "quality.steps=4", "model.learn_sigma=true", "loss=vlb"]


@pytest.mark.slow
def test_a_run_with_importance_sampled_timesteps_resumes_bit_identical(tiny_data, tmp_path):
    env = {"PYTHONPATH": str(ROOT / "tests")}
    whole = run_cli("train.py", *RESUMABLE, *IMPORTANCE, f"paths.log_dir={tmp_path / 'whole'}", data=tiny_data)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run_cli("train.py", *RESUMABLE, *IMPORTANCE, *CRASH_AT_8, f"paths.log_dir={tmp_path / 'killed'}",
                     data=tiny_data, env=env)
    assert killed.returncode == -9
    run = the_run(tmp_path / "killed")
    resumed = run_cli("train.py", f"resume={run}", "~callbacks.crash", data=tiny_data, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = the_run(tmp_path / "whole")
    assert_resumed_exactly(reference, run)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["current_model_state"]
    assert state["timestep_sampler.loss_counts"].tolist() == [10] * 4  # warm: the history was in use
    assert any(r["val/bpd"] for r in metrics_rows(run))
