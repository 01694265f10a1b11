"""Hydra multiruns: one complete run directory per job with a short name, DDP inside a sweep, W&B grouping,
and the sweep presets (Optuna search, SLURM launcher) composed through Hydra's API."""

import json
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write

from conftest import TINY_TRAIN, run_cli
from diffusion_lab.resolvers import short_name

SWEEP = [*TINY_TRAIN, "trainer.max_epochs=1", "~callbacks.figures", "quality.final_steps=[]"]


def job_dirs(cwd: Path) -> list[Path]:
    (sweep,) = cwd.glob("multirun/*/*")
    return sorted((p.parent.parent for p in sweep.glob("*/.hydra/config.yaml")), key=lambda p: int(p.name.split("-")[0]))


def test_short_names_keep_choices_and_values():
    assert short_name(["dataset=fashion_mnist", "schedule=cosine", "T=200", "optimizer.lr=1e-3",
                       "~callbacks.figures"]) == "fashion_mnist,cosine,T=200,lr=1e-3,no_figures"
    long = short_name([f"trainer.limit_train_batches={k}" for k in range(20)])
    assert len(long) == 100 and long != short_name([f"trainer.limit_train_batches={k}" for k in range(21)])


def test_wandb_groups_a_sweep_and_tags_its_choices(compose_cfg):
    cfg = compose_cfg("schedule=cosine", "T=200")
    assert cfg.logger.wandb.group is None and cfg.logger.wandb.name == "mnist-cosine-T200-unet_small"
    with read_write(cfg.hydra):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 3
        cfg.hydra.sweep.dir = "multirun/2026-11-23/10-00-00-abcdef"
    HydraConfig.instance().set_config(cfg)  # as Hydra sets it for job 3 of a sweep
    assert cfg.logger.wandb.group == "2026-11-23/10-00-00-abcdef"
    assert cfg.logger.wandb.name == "mnist-cosine-T200-unet_small#3"
    assert list(cfg.logger.wandb.tags) == ["cosine", "T=200"]


@pytest.mark.slow
def test_ddp_trains_with_two_processes_inside_a_multirun_each_job_once(tiny_data, tmp_path):
    result = run_cli("train.py", "-m", *TINY_TRAIN, "trainer.max_epochs=1", "~callbacks.figures", "trainer=ddp",
                     "trainer.accelerator=cpu", "trainer.devices=2", "quality.final_n=7", "schedule=linear,cosine",
                     "logger=csv", cwd=tmp_path, data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path)  # the child processes neither re-ran the sweep nor made directories of their own
    assert [p.name[:2] for p in jobs] == ["0-", "1-"]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["run_name"] for s in summaries] == ["mnist-linear-T50-unet_tiny", "mnist-cosine-T50-unet_tiny"]
    assert all(s["world_size"] == 2 and s["optimizer_steps"] == 4 and s["images_seen"] == 4 * 32 * 2
               for s in summaries)
    assert len(list(tmp_path.glob("multirun/*/*"))) == 1 and not (tmp_path / "outputs").exists()
    for job, summary in zip(jobs, summaries):  # rank 0 alone wrote the checkpoint, the grids and the summary
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["last.ckpt", "step0000004.ckpt"]
        assert (job / "samples" / "final_ddpm-50.png").exists() and (job / "samples" / "final_ddim-50.png").exists()
        (final,) = summary["quality"]["results"]  # each rank sampled 4, the gathered features were cut to exactly 7
        assert final["n"] == 7 and final["steps"] == 50


def test_step_study_preset_sweeps_eight_recipe_models_on_one_step_budget(compose_cfg):
    cfg = compose_cfg("experiment=step_study")
    assert cfg.hydra.mode == RunMode.MULTIRUN
    assert dict(cfg.hydra.sweeper.params) == {
        "dataset": "mnist,fashion_mnist", "+step_study_model": "linear,cosine,linear_T200,learned"}
    assert cfg.trainer.max_steps == 3000 and cfg.trainer.max_time is None and list(cfg.quality.final_steps) == []
    arms = {arm: compose_cfg("experiment=step_study", "dataset=fashion_mnist", f"+step_study_model={arm}")
            for arm in ("linear", "cosine", "linear_T200", "learned")}
    assert {arm: (c.schedule._target_.rsplit(".", 1)[1], c.T, c.model.learn_sigma, c.loss) for arm, c in arms.items()} == {
        "linear": ("linear_betas", 1000, False, "simple"), "cosine": ("cosine_betas", 1000, False, "simple"),
        "linear_T200": ("linear_betas", 200, False, "simple"), "learned": ("linear_betas", 1000, True, "hybrid")}
    recipe = compose_cfg("experiment=cpu_fashion_mnist")
    for c in arms.values():  # every arm is the CPU recipe on the data set: the same network, loss and optimizer
        assert c.model.channel_mults == recipe.model.channel_mults and c.prediction == recipe.prediction == "v"
        assert c.optimizer.lr == recipe.optimizer.lr and c.dataset.batch_size == recipe.dataset.batch_size == 64
        assert c.model.num_classes is None and recipe.model.num_classes == 10  # its models are unconditional
        assert c.sampler.get("algorithm") == "sde-dpmsolver++" and recipe.sampler._target_.endswith("DDPMSampler")


def test_optuna_search_minimises_val_fid_over_lr_model_and_schedule(compose_cfg):
    cfg = compose_cfg("hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert set(sweeper.params) == {"optimizer.lr", "model", "schedule"} and sweeper.sampler.seed == cfg.seed
    assert cfg.hydra.mode == RunMode.MULTIRUN and cfg.quality.every_n_epochs == 1


def test_slurm_launcher_asks_for_a_task_per_gpu(compose_cfg):
    cfg = compose_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4 and launcher.nodes == 1


@pytest.mark.slow
def test_optuna_search_minimises_the_val_fid_that_train_returns(tiny_data, tmp_path):
    result = run_cli("train.py", "hparams_search=optuna", *SWEEP, "hydra.sweeper.n_trials=2", "logger=csv",
                     "~hydra.sweeper.params.model", "~hydra.sweeper.params.schedule", cwd=tmp_path, data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path)
    fids = [json.loads((job / "summary.json").read_text())["val_metrics"]["fid@5"] for job in jobs]
    results = OmegaConf.load(next(tmp_path.glob("multirun/*/*/optimization_results.yaml")))
    assert len(jobs) == 2 and results.best_value == pytest.approx(min(fids))
    assert set(results.best_params) == {"optimizer.lr"}


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_as_its_own_process(tiny_data, tmp_path):
    result = run_cli("train.py", "-m", "hydra/launcher=submitit_local", *SWEEP, "schedule=linear,cosine",
                     "logger=csv", cwd=tmp_path, data=tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path)
    assert [json.loads((job / "summary.json").read_text())["run_name"] for job in jobs] == [
        "mnist-linear-T50-unet_tiny", "mnist-cosine-T50-unet_tiny"]
    assert list(tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))  # submitit ran them, not Hydra in-process
