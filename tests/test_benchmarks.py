"""The GPU check runs end to end, at tiny sizes on a CPU (`--cpu`), and writes its summary as one JSON file."""

import json
import os
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu_and_writes_every_steps_figures(tiny_data, tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DIFFUSION_LAB_DATA": str(tiny_data), "WANDB_MODE": "offline"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "dataset.val_size=32"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert set(summary) == {"train_gpu_settings", "train_plain", "sample_gpu_settings", "sample_plain", "recipe"}
    for name in ("train_gpu_settings", "train_plain", "sample_gpu_settings", "sample_plain"):
        assert summary[name]["ratio"] > 0 and summary[name]["device"] == "cpu"
    assert summary["train_plain"]["speed"]["channels_last"] is False and summary["train_plain"]["fused_adamw"] is False
    recipe = summary["recipe"]["ours"]
    assert recipe["optimizer_steps"] == 4 and recipe["fid"] > 0 and recipe["fid_ci"][0] <= recipe["fid"]
    assert (tmp_path / "out" / "recipe" / "ours_grid.png").stat().st_size > 0
