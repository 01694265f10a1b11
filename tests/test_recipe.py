"""The CPU recipe's training pieces: the learning rate that decays to the end of the budget, the power-function
EMA, the recipe presets, and the sampling batch size picked for the device."""

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Timer

from diffusion_lab.callbacks import EMA
from diffusion_lab.callbacks.ema import ema_weight
from diffusion_lab.checkpoints import SHIPPED_KEYS, export_weights, find_checkpoint, load_run, read_checkpoint
from diffusion_lab.cli import sample_main
from diffusion_lab.data import DiffusionDataModule
from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas
from diffusion_lab.evaluate import local_data_dir
from diffusion_lab.metrics.feature_net import MIN_ACCURACY, load_feature_net
from diffusion_lab.errors import ConfigError
from diffusion_lab.generation import COMPILE_MIN_EVALUATIONS, CPU_BATCH, sampling_batch_size, should_compile
from diffusion_lab.models import UNet
from diffusion_lab.module import DiffusionModule, lr_factor


LR = 1e-3


def tiny_module(schedule: str, warmup_steps: int = 3) -> DiffusionModule:
    net = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), norm_groups=4)
    return DiffusionModule(net, GaussianDiffusion(cosine_betas(10)), val_size=16, warmup_steps=warmup_steps,
                           lr_schedule=schedule, optimizer=lambda params: torch.optim.SGD(params, lr=LR))


class LearningRates(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def learning_rates(tiny_data, schedule: str, **trainer_args) -> list[float]:
    rates = LearningRates()
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=4, val_size=16, download=False)
    trainer = pl.Trainer(limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[rates], **trainer_args)
    trainer.fit(tiny_module(schedule), dm)
    return rates.seen


def test_the_cosine_warms_up_then_follows_a_half_cosine_to_zero_at_max_steps(tiny_data):
    steps = 12
    seen = learning_rates(tiny_data, "cosine", max_steps=steps)
    expected = [LR * min(1, (k + 1) / 3) * 0.5 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
    assert seen == pytest.approx(expected, rel=1e-6)
    constant = learning_rates(tiny_data, "constant", max_steps=steps)
    assert constant == pytest.approx([LR * min(1, (k + 1) / 3) for k in range(steps)])


def test_the_cosine_follows_the_clock_under_max_time(tiny_data, monkeypatch):
    """With trainer.max_time the share spent is the time's: a clock that advances 10 s per step through a 100 s
    budget puts step k ≥ 1 at progress 10·(k − 1)/100, the clock read when the scheduler stepped after step k − 1
    (max_steps, far away, does not matter)."""
    clock = {"now": 0.0}
    monkeypatch.setattr("pytorch_lightning.callbacks.timer.time.monotonic", lambda: clock["now"])

    class Tick(pl.Callback):
        def on_train_batch_end(self, *args):
            clock["now"] += 10.0

    rates = LearningRates()
    dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=4, val_size=16, download=False)
    trainer = pl.Trainer(max_steps=10_000, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, max_time=timedelta(seconds=100), callbacks=[rates, Tick()])
    trainer.fit(tiny_module("cosine", warmup_steps=1), dm)
    k = len(rates.seen)
    assert 9 <= k <= 11  # stopped by the clock
    progress = [r / LR for r in rates.seen[:8]]
    expected = [0.5 * (1 + math.cos(math.pi * max(0, k - 1) / 10)) for k in range(8)]
    assert progress == pytest.approx(expected, abs=1e-3)


def test_lr_factor_is_the_warm_up_times_the_cosine():
    assert lr_factor(0, 4, "cosine", 0.0) == pytest.approx(0.25)
    assert lr_factor(10, 4, "cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor(10, 4, "cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor(10, 4, "constant", 0.9) == 1.0


def test_the_power_ema_keeps_the_average_karras_et_al_define():
    """d_n = (1 − 1/(n+1))^(γ+1) makes the EMA after t updates the mean of the weights w_k (1-based k) weighted by
    k^(γ+1) − (k − 1)^(γ+1) ≈ (γ+1)·k^γ: the power profile of Karras et al. 2024, eq. 3."""
    gamma, values = 6.94, torch.randn(50, dtype=torch.float64)
    ema = torch.zeros((), dtype=torch.float64)
    for n, w in enumerate(values):
        ema = torch.lerp(ema, w, ema_weight(n, 0.999, gamma))
    k = torch.arange(1, 51, dtype=torch.float64)
    profile = k ** (gamma + 1) - (k - 1) ** (gamma + 1)
    assert ema.item() == pytest.approx(float((profile * values).sum() / profile.sum()), rel=1e-9)
    assert ema_weight(0, 0.999, gamma) == 1.0


def test_a_bad_gamma_or_lr_schedule_is_refused():
    with pytest.raises(ConfigError, match="callbacks.ema.gamma"):
        EMA(gamma=0.0)
    with pytest.raises(ConfigError, match="module.lr_schedule.*constant.*cosine"):
        tiny_module("step")


def test_sampling_batch_size_and_compile_are_the_devices_unless_asked():
    assert sampling_batch_size(1000, "cpu") == CPU_BATCH
    assert sampling_batch_size(10, "cpu") == 10
    assert sampling_batch_size(1000, "cpu", 256) == 256
    threshold = COMPILE_MIN_EVALUATIONS["cpu"]
    assert should_compile("auto", threshold, "cpu") and not should_compile("auto", threshold - 1, "cpu")
    assert should_compile(True, 1, "cpu") and not should_compile(False, 10 ** 9, "cpu")


def test_sample_picks_batch_and_compile_for_the_work(tiny_run, tmp_path, run_in_process):
    """64 images × 5 steps: batches of CPU_BATCH, not compiled; both recorded beside the images."""
    result = run_in_process(sample_main, f"ckpt={tiny_run}", "steps=5", "n=70", f"out_dir={tmp_path / 's'}",
                            "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((tmp_path / "s" / "settings.json").read_text())
    assert settings["batch_size"] == CPU_BATCH and settings["compiled"] is False
    assert "sampling in batches of 64, not compiled (350 network evaluations" in result.stderr + result.stdout


def test_an_exported_model_is_the_runs_ema_weights_alone_and_samples_like_the_run(tiny_run, tmp_path):
    shipped = export_weights(tiny_run, tmp_path / "model")
    assert shipped == tmp_path / "model" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(shipped, weights_only=True)
    assert set(ckpt) <= set(SHIPPED_KEYS) and "optimizer_states" not in ckpt and "current_model_state" not in ckpt
    assert read_checkpoint(shipped)["fingerprint"] == read_checkpoint(find_checkpoint(tiny_run)[0])["fingerprint"]
    assert shipped.stat().st_size < find_checkpoint(tiny_run)[0].stat().st_size / 2
    run, _, _ = load_run(tiny_run)
    exported, _, run_dir = load_run(tmp_path / "model")
    assert run_dir == tmp_path / "model"
    assert all(torch.equal(a, b) for a, b in zip(run.state_dict().values(), exported.state_dict().values()))


SHIPPED = Path(__file__).resolve().parents[1] / "experiments" / "cpu_recipe" / "models"


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_a_shipped_model_loads_with_weights_only_and_samples(dataset, tmp_path, run_in_process):
    folder = SHIPPED / dataset
    ckpt = read_checkpoint(folder / "checkpoints" / "last.ckpt")  # weights_only=True, the fingerprint checked
    assert set(ckpt) <= set(SHIPPED_KEYS) and ckpt["hyper_parameters"]["dataset"]["name"] == dataset
    assert (folder / "checkpoints" / "last.ckpt").stat().st_size < 2_000_000
    result = run_in_process(sample_main, f"ckpt={folder}", "n=4", "steps=10", f"out_dir={tmp_path / 's'}",
                            "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    images = np.load(tmp_path / "s" / "samples.npz")["images"]
    assert images.shape == (4, 28, 28) and images.std() > 10  # images, not a constant


STEP_STUDY = Path(__file__).resolve().parents[1] / "experiments" / "step_study" / "models"
STEP_STUDY_ARMS = {"linear": ("linear_betas", 1000, False, "simple"), "cosine": ("cosine_betas", 1000, False, "simple"),
                   "linear_T200": ("linear_betas", 200, False, "simple"), "learned": ("linear_betas", 1000, True, "hybrid")}


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("arm", STEP_STUDY_ARMS)
def test_the_step_study_ships_its_eight_models_as_its_preset_trained_them(dataset, arm):
    folder = STEP_STUDY / f"{dataset}_{arm}"
    ckpt = read_checkpoint(folder / "checkpoints" / "last.ckpt")  # weights_only=True, the fingerprint checked
    cfg = ckpt["hyper_parameters"]
    assert set(ckpt) <= set(SHIPPED_KEYS) and (folder / "checkpoints" / "last.ckpt").stat().st_size < 2_000_000
    assert (cfg["schedule"]["_target_"].rsplit(".", 1)[1], cfg["T"], cfg["model"]["learn_sigma"], cfg["loss"]) == \
        STEP_STUDY_ARMS[arm] and cfg["dataset"]["name"] == dataset and cfg["prediction"] == "v"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["optimizer_steps"] == cfg["trainer"]["max_steps"] == 3000


def test_the_step_study_ships_the_feature_net_of_every_data_set_it_has_scored():
    # All its sessions must score in one feature space: a net retrained elsewhere could differ in its last bits
    # A model's samples are scored in features once any eval.json of its holds a result (the bound alone needs none)
    scored = {OmegaConf.load(STEP_STUDY / m.name / ".hydra" / "config.yaml").dataset.name
              for m in (STEP_STUDY.parent / "results").iterdir()
              if any(json.loads(p.read_text()).get("results") for p in m.glob("**/eval.json"))}
    assert "mnist" in scored
    for dataset in scored:  # loaded from the shipped file, or it would train, from data that is not there
        _, record = load_feature_net(dataset, "/nonexistent/data", cache_dir=STEP_STUDY.parent / "feature_nets")
        assert record["test_accuracy"] >= MIN_ACCURACY[dataset]


@pytest.mark.parametrize("kind", ["fixed", "learned"])
def test_the_learned_variance_study_ships_both_models(kind):
    folder = Path(__file__).resolve().parents[1] / "experiments" / "learned_variance" / "models" / kind
    ckpt = read_checkpoint(folder / "checkpoints" / "last.ckpt")
    assert set(ckpt) <= set(SHIPPED_KEYS) and ckpt["hyper_parameters"]["model"]["learn_sigma"] == (kind == "learned")


def test_a_step_study_model_with_learned_variances_samples(tmp_path, run_in_process):
    result = run_in_process(sample_main, f"ckpt={STEP_STUDY / 'mnist_learned'}", "sampler=ddpm", "n=4", "steps=10",
                            f"out_dir={tmp_path / 's'}", "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    images = np.load(tmp_path / "s" / "samples.npz")["images"]
    assert images.shape == (4, 28, 28) and images.std() > 10


def test_a_run_trained_elsewhere_is_scored_against_this_machines_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DATA", str(tmp_path))
    assert local_data_dir("/nonexistent/data") == str(tmp_path)
    assert local_data_dir(str(SHIPPED)) == str(SHIPPED)


def test_a_cosine_without_any_budget_is_refused_before_training(compose_cfg):
    from diffusion_lab.config_checks import check_train_config

    cfg = compose_cfg("module.lr_schedule=cosine", "trainer.max_epochs=-1", "trainer.max_steps=-1")
    with pytest.raises(ConfigError, match="module.lr_schedule=cosine .* trainer.max_steps, trainer.max_epochs or "
                                          "trainer.max_time, or use module.lr_schedule=constant"):
        check_train_config(cfg)
    check_train_config(compose_cfg("module.lr_schedule=cosine", "trainer.max_epochs=-1", "trainer.max_steps=-1",
                                   "trainer.max_time=00:00:01:00"))
