"""The benchmarks that CI can run at tiny sizes: the GPU check on a CPU (`--cpu`), writing its summary as one
JSON file, bench_quality's two sides, bench_losses, and bench_fusion's rewiring of the U-Net."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from diffusion_lab.checkpoints import read_checkpoint
from diffusion_lab.models import UNet

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
from bench_fusion import FusedHead, FusedResBlock, fuse  # noqa: E402


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


def test_bench_fusion_routes_every_norm_chain_through_the_compiled_functions_and_computes_the_same():
    torch.manual_seed(0)
    eager = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(14,), norm_groups=4)
    for p in eager.parameters():  # no zero-initialised output convolutions: every path shows in the result
        torch.nn.init.normal_(p, std=0.2)
    fused = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(14,), norm_groups=4)
    fused.load_state_dict(eager.state_dict())
    fuse(fused, backend="eager")  # dynamo's graphs run as traced: the same arithmetic as the eager network
    blocks = [m for m in fused.modules() if isinstance(m, FusedResBlock)]
    assert len(blocks) == 2 + 2 + 4 and isinstance(fused.head, FusedHead)  # down, mid, up
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 500, 999])
    losses = [F.mse_loss(net(x, t), torch.zeros_like(x)) for net in (eager, fused)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0])
    for p, q in zip(eager.parameters(), fused.parameters()):  # the same parameters, in the same order
        torch.testing.assert_close(q.grad, p.grad)
