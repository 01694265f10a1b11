"""train.py end to end in subprocesses, as a user runs it, and the EMA/sampling contract in process."""

import csv
import json
from pathlib import Path
from datetime import timedelta
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer

from conftest import REAL_DATA, TINY_TRAIN, one_line_error, run_cli
from diffusion_lab import viz
from diffusion_lab.callbacks import EMA, SampleGrid, SampleQuality, TimeBudget
from diffusion_lab.cli import train_main
from diffusion_lab.data import DiffusionDataModule
from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas
from diffusion_lab.errors import ConfigError
from diffusion_lab.models import UNet
from diffusion_lab.module import DiffusionModule


def run_dirs(log_dir: Path) -> list[Path]:
    return sorted(p.parent for p in log_dir.glob("*/*/.hydra"))


def read_metrics(run: Path) -> list[dict]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(tiny_run):
    run = tiny_run
    assert run.name[:8].count("-") == 2 and len(run.name.split("-")[-1]) == 6  # HH-MM-SS-<suffix>

    summary = json.loads((run / "summary.json").read_text())
    assert summary["run_name"] == "mnist-linear-T50-unet_tiny"
    assert summary["optimizer_steps"] == 8 and summary["images_seen"] == 8 * 32
    assert summary["parameters"] == sum(p.numel() for p in UNet(channels=16, channel_mults=(1, 2),
                                                                 num_res_blocks=1, attention_resolutions=()).parameters())
    assert 0 < summary["final_train_loss"] < 2 and 0 < summary["final_val_loss"] < 2
    assert set(summary["val_loss_by_t_bucket"]) == {f"t{k}" for k in range(10)}
    assert summary["train_images_per_second"] > 0 and summary["wall_seconds"] >= summary["train_seconds"]
    quality = summary["quality"]  # the final evaluation at sampling.steps, in the data set's feature space
    assert [(r["sampler"], r["steps"], r["n"]) for r in quality["results"]] == [("ddim", 5, 8), ("ddim", 10, 8)]
    assert quality["real_n"] == 32 and quality["feature_net"]["settings"]["epochs"] == 1
    assert all({"fid_ci", "kid_ci", "floor_fid", "nfe", "seconds_per_1k"} <= set(r) for r in quality["results"])
    assert {(p["setting"], p["against"]) for p in quality["paired"]} == {("ddim-5", "ddim-10")}  # same seeds
    assert summary["after_training"]["budget_seconds"] == 120  # auto on a CPU: 20 % of seconds, at least 2 minutes
    assert set(summary["val_metrics"]) == {"bpd", "fid@5", "kid@5", "precision@5", "recall@5", "quality_n@5"}
    assert 0 < summary["val_metrics"]["bpd"] < 50  # bits per dimension: 8 is a uniform guess over 256 levels

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["T"] == 50 and ckpt["hyper_parameters"]["model"]["channels"] == 16
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]  # EMA weights are the checkpoint's state_dict
    assert ema.keys() == raw.keys() and any(not torch.equal(ema[k], raw[k]) for k in ema)

    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    per_time = ["compare", "ddim-10", "ddim-5", "ddpm-50"]  # full-T DDPM and DDIM at each step count
    assert grids == [f"final_{g}.png" for g in per_time] + [f"step0000004_{g}.png" for g in per_time]
    from PIL import Image
    assert Image.open(run / "samples" / "final_ddim-5.png").size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)

    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows if r["train/loss_step"]] == list(range(8))
    assert sum(1 for r in rows if r["val/loss"]) == 2
    assert [float(r["val/fid@5"]) >= 0 for r in rows if r["val/fid@5"]] == [True, True]  # every_n_epochs=1
    assert list(run.glob("wandb/offline-run-*")), "W&B must run offline without an account"
    assert (run / "train.log").exists() and (run / ".hydra" / "config.yaml").exists()
    assert sorted(p.stem for p in (run / "viz").glob("*.png")) == sorted(viz.FIGURES)


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_measures_quality_at_its_final_weights(tiny_data, tmp_path):
    """max_steps (or max_time) can end training inside an epoch: train.py then validates the final weights, and
    that validation measures val/fid too, so summary.json and what train.py returns to a sweeper have it."""
    result = run_cli("train.py", *TINY_TRAIN, "trainer.max_steps=6", "quality.final_steps=[]", "~callbacks.figures",
                     "logger=csv", f"paths.log_dir={tmp_path}", data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    measured = [(int(r["step"]), r["val/fid@5"] != "") for r in read_metrics(run) if r["val/loss"]]
    assert measured == [(3, False), (6, True)]  # epoch 0 (not due: every 5 epochs), then the final weights
    assert set(json.loads((run / "summary.json").read_text())["val_metrics"]) == {
        "bpd", "fid@5", "kid@5", "precision@5", "recall@5", "quality_n@5"}


@pytest.mark.slow
def test_the_work_after_a_short_cpu_run_stays_within_its_time_budget(tiny_data, tmp_path):
    """As configured, the final grids (64 images, full-T DDPM and 10/20/50 steps) and evaluation (2,000 images at
    each step count) would take minutes after seconds of training; with after_training.budget=3 they are cut to
    fit, and say so."""
    overrides = {"sampling.n_images": "64", "sampling.steps": "[10,20,50]", "quality.final_steps": "[10,20,50]",
                 "quality.final_n": "2000", "trainer.max_epochs": "1", "after_training.budget": "3"}
    tiny = [arg for arg in TINY_TRAIN if arg.split("=")[0] not in overrides]
    result = run_cli("train.py", *tiny, *(f"{k}={v}" for k, v in overrides.items()), "logger=csv",
                     f"paths.log_dir={tmp_path}", data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    after = json.loads((run / "summary.json").read_text())["after_training"]
    assert after["budget_seconds"] == 3 and after["seconds"] < 3 + 12, after  # the budget, and what no phase plans:
    # writing the PNGs, scoring the images
    log = result.stdout + result.stderr
    assert "after training" in log and ("grids (final) skipped" in log or "of 64 images" in log)
    assert "of 2000" in log or "final evaluation skipped" in log  # cut or, on a slow machine, skipped: and said so
    results = json.loads((run / "summary.json").read_text())["quality"]["results"]
    assert all(r["n"] < 2000 for r in results)


def test_periodic_work_gets_the_time_left_before_max_time_and_no_limit_without_it():
    budget = TimeBudget()
    timer = Timer(duration=timedelta(seconds=60))
    one_process = SimpleNamespace(broadcast=lambda value, src=0: value)
    with_timer = SimpleNamespace(callbacks=[budget, timer], strategy=one_process)
    assert budget.seconds_for(SimpleNamespace(callbacks=[budget], strategy=one_process), "periodic") is None
    assert budget.seconds_for(with_timer, "periodic") == pytest.approx(60, abs=1)  # training has not started


def spy_module(diffusion_T: int = 10) -> DiffusionModule:
    net = UNet(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=())
    return DiffusionModule(net, GaussianDiffusion(cosine_betas(diffusion_T)),
                           optimizer=lambda params: torch.optim.Adam(params, lr=1e-2), warmup_steps=1, val_size=16)


class ReferenceEMA(pl.Callback):
    """An independent EMA of the raw weights after every optimizer step, with the documented warm-up."""

    def __init__(self, decay):
        self.decay, self.n, self.ema, self.raw = decay, 0, None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw = [p.detach().clone() for p in pl_module.net.parameters()]
        if self.ema is None:
            self.ema = self.raw
        else:
            d = min(self.decay, (1 + self.n) / (10 + self.n))
            self.ema = [d * e + (1 - d) * r for e, r in zip(self.ema, self.raw)]
        self.n += 1


def test_grids_are_drawn_with_the_ema_weights(tiny_data, tmp_path, monkeypatch):
    module, reference = spy_module(), ReferenceEMA(0.999)
    seen = []  # (weights at sampling time, reference EMA, raw weights)

    def recording_sample(noise, generator=None, sampler=None, labels=None):
        seen.append(([p.detach().clone() for p in module.net.parameters()], reference.ema, reference.raw))
        return torch.zeros_like(noise)

    monkeypatch.setattr(module, "sample", recording_sample)
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=16, val_size=16, download=False)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0,
                         callbacks=[reference, EMA(0.999), SampleGrid(str(tmp_path), n_images=2)])
    trainer.fit(module, dm)
    assert len(seen) == 2  # after epoch 0 and at the end; the last epoch's grid is the final one
    for weights, ema, raw in seen:
        assert all(torch.allclose(w, e, atol=1e-6) for w, e in zip(weights, ema))
        assert any(not torch.allclose(w, r, atol=1e-4) for w, r in zip(weights, raw))


def test_a_runs_weights_do_not_depend_on_whether_the_feature_net_was_cached(tiny_data, tmp_path):
    """SampleQuality trains the feature net in its setup when it is not cached; that training must not draw from
    the global random streams that the diffusion run's dropout draws from."""
    def final_weights() -> dict[str, torch.Tensor]:
        pl.seed_everything(0)
        net = UNet(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), dropout=0.3)
        module = DiffusionModule(net, GaussianDiffusion(cosine_betas(10)), val_size=16, warmup_steps=1,
                                 optimizer=lambda params: torch.optim.Adam(params, lr=1e-2))
        quality = SampleQuality("mnist", str(tiny_data), sampler=None, steps=1, n=2, final_n=2, real_n=16,
                                feature_net_epochs=1, feature_net_cache_dir=str(tmp_path / "cache"))
        dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=16, val_size=16, download=False)
        trainer = pl.Trainer(max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, callbacks=[EMA(), quality])
        trainer.fit(module, dm)
        return {k: v.clone() for k, v in module.state_dict().items()}

    trained_the_net = final_weights()
    assert list((tmp_path / "cache").glob("feature_net-*.pt"))
    loaded_the_net = final_weights()
    assert trained_the_net.keys() == loaded_the_net.keys()
    assert all(torch.equal(trained_the_net[k], loaded_the_net[k]) for k in trained_the_net)


def test_sample_grid_before_the_ema_is_refused(tiny_data, tmp_path):
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=16, val_size=16, download=False)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[SampleGrid(str(tmp_path)), EMA()])
    with pytest.raises(ConfigError, match="the EMA callback must come before SampleGrid"):
        trainer.fit(spy_module(), dm)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason="needs MNIST under DIFFUSION_LAB_DATA")
def test_a_short_run_on_real_mnist_lowers_the_loss(tmp_path):
    result = run_cli("train.py", "model=unet_tiny", "trainer=cpu", "trainer.max_steps=40", "logger=csv",
                     "dataset.batch_size=64", "dataset.val_size=256", "optimizer.lr=1e-3", "module.warmup_steps=10",
                     "trainer.limit_val_batches=4", "trainer.log_every_n_steps=5", "~callbacks.sample_grid", "~callbacks.figures",
                     "~callbacks.quality", f"paths.log_dir={tmp_path}", data=REAL_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    losses = [float(r["train/loss_step"]) for r in read_metrics(run) if r["train/loss_step"]]
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert first > 0.8 and last < 0.5 * first, losses
    assert json.loads((run / "summary.json").read_text())["final_val_loss"] < 0.5
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # saved mid-epoch, at max_steps
    assert ckpt["global_step"] == 40
    assert any(not torch.equal(ckpt["state_dict"][k], v) for k, v in ckpt["current_model_state"].items())


def test_missing_data_offline_says_where_to_put_it(tmp_path, run_in_process, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    error = one_line_error(run_in_process(train_main, *TINY_TRAIN, "logger=csv", f"paths.log_dir={tmp_path}",
                                          data=tmp_path / "nowhere"))
    assert "paths.data_dir=" in error and "MNIST/raw" in error


def test_an_unknown_option_is_refused_by_hydra(tmp_path, run_in_process):
    error = one_line_error(run_in_process(train_main, "schedule=quadratic", f"paths.log_dir={tmp_path}"))
    assert "schedule=quadratic" in error and "cosine" in error and "linear" in error
