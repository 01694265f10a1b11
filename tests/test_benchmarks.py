"""The benchmarks that CI can run at tiny sizes: the GPU check on a CPU (`--cpu`), writing its summary as one
JSON file, and bench_quality's two sides."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from diffusion_lab.checkpoints import read_checkpoint


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu_and_writes_every_steps_figures(tiny_data, tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DIFFUSION_LAB_DATA": str(tiny_data), "WANDB_MODE": "offline"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "dataset.val_size=32"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert set(summary) == {"train_gpu_settings", "train_plain", "sample_gpu_settings", "sample_plain", "recipe", "gpu"}
    assert summary["gpu"] is None  # the GPU's name and memory, on a GPU
    for name in ("train_gpu_settings", "train_plain", "sample_gpu_settings", "sample_plain"):
        assert summary[name]["ratio"] > 0 and summary[name]["device"] == "cpu"
    assert summary["train_plain"]["speed"]["channels_last"] is False and summary["train_plain"]["fused_adamw"] is False
    recipe = summary["recipe"]["ours"]
    assert recipe["optimizer_steps"] == 4 and recipe["fid"] > 0 and recipe["fid_ci"][0] <= recipe["fid"]
    assert (tmp_path / "out" / "recipe" / "ours_grid.png").stat().st_size > 0


@pytest.mark.slow
def test_bench_quality_trains_and_scores_both_sides_and_exports_ours(tiny_data, tmp_path):
    env = {**os.environ, "DIFFUSION_LAB_DATA": str(tiny_data), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_quality.py"), "--max-steps", "2",
                             "--n", "12", "--real-n", "32", "--out", str(tmp_path / "out"), "--export",
                             str(tmp_path / "model"), "dataset.val_size=32"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "out" / "result.json").read_text())
    for side in ("diffusers", "ours"):
        assert report[side]["optimizer_steps"] == 2 and report[side]["nfe"] == 50
        low, high = report[side]["fid_ci"]
        assert low <= report[side]["fid"] <= high + 1e-6
    assert report["fid_ratio"] == pytest.approx(report["ours"]["fid"] / report["diffusers"]["fid"], abs=1e-4)
    assert report["floor_fid"] > 0
    assert 0 <= report["ours"]["class_accuracy"] <= 1 and "class_accuracy" not in report["diffusers"]  # by class
    assert read_checkpoint(tmp_path / "model" / "checkpoints" / "last.ckpt")["hyper_parameters"]["prediction"] == "v"


def test_bench_losses_times_every_loss_side_by_side():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_losses.py"), "--batch", "2", "--steps", "1",
                             "--rounds", "1"], cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["images_per_second"]) == {"simple", "hybrid", "vlb"} and report["ratio_to_simple"]["simple"] == 1
    assert all(v > 0 for v in report["images_per_second"].values())
