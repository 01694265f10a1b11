"""sample.py end to end: rebuilds the model from a run's checkpoint and never overwrites earlier samples (once as a
user runs it, then through the same entry point in this process)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from diffusion_lab.checkpoints import load_run
from diffusion_lab.cli import sample_main
from diffusion_lab.files import fresh_dir
from diffusion_lab.images import save_grid
from diffusion_lab.rng import seeded_generator

def read_samples(folder):
    data = np.load(folder / "samples.npz")
    return data["images"], json.loads(str(data["settings"]))


@pytest.mark.slow
def test_sample_writes_npz_and_grid_and_never_overwrites(tiny_run, run_in_process):
    args = ["sampler=ddim", "steps=5", "n=6", "batch_size=4", "seed=3", f"ckpt={tiny_run}", "progress=false"]
    first = run_cli("sample.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = tiny_run / "samples" / "ddim-5-n6-seed3"
    images, settings = read_samples(folder)
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    assert settings["steps"] == 5 and settings["timesteps"] == [49, 39, 29, 19, 9] and settings["ema"] is True
    assert (folder / "grid.png").stat().st_size > 0
    before = (folder / "samples.npz").read_bytes()

    second = run_in_process(sample_main, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    again, _ = read_samples(tiny_run / "samples" / "ddim-5-n6-seed3-1")
    assert (folder / "samples.npz").read_bytes() == before  # the first output is untouched
    assert np.array_equal(images, again)  # and the seed reproduces it


@pytest.mark.slow
def test_ema_false_uses_the_raw_weights(tiny_run, tmp_path, run_in_process):
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    for ema, key in ((True, "state_dict"), (False, "current_model_state")):
        module, cfg, run_dir = load_run(tiny_run / "checkpoints" / "last.ckpt", ema=ema)
        assert run_dir == tiny_run and cfg.T == 50 and not module.training
        assert all(torch.equal(v, ckpt[key][k]) for k, v in module.state_dict().items())
    result = run_in_process(sample_main, f"ckpt={tiny_run}", "steps=3", "n=2", "ema=false",
                            f"out_dir={tmp_path / 'raw'}", "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_samples(tmp_path / "raw")[1]["ema"] is False


@pytest.mark.slow
def test_two_processes_split_the_work_with_distinct_noise(tiny_run, tmp_path):
    result = run_cli("sample.py", f"ckpt={tiny_run}", "sampler=dpm_solver", "steps=4", "n=5", "devices=2",
                     "accelerator=cpu", f"out_dir={tmp_path / 'ddp'}", "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    images, settings = read_samples(tmp_path / "ddp")
    assert images.shape == (5, 28, 28) and settings["world_size"] == 2  # 3 + 3 drawn, exactly 5 kept
    assert len(np.unique(images.reshape(5, -1), axis=0)) == 5  # rank 1 drew its own noise: no image twice


def test_rank_streams_are_distinct_and_reproducible():
    draw = lambda seed, rank: torch.randn(4, generator=seeded_generator(seed, rank))  # noqa: E731
    assert torch.equal(draw(0, 0), draw(0, 0))
    assert not torch.equal(draw(0, 0), draw(0, 1)) and not torch.equal(draw(0, 1), draw(1, 0))


def test_fresh_dir_counts_up_and_creates(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a-1").mkdir()
    assert fresh_dir(tmp_path / "a") == tmp_path / "a-2" and (tmp_path / "a-2").is_dir()
    assert fresh_dir(tmp_path / "b") == tmp_path / "b"


def test_grids_show_at_most_256_images_in_class_rows_or_a_square(tmp_path):
    images = torch.zeros(300, 1, 28, 28, dtype=torch.uint8)
    save_grid(images, torch.arange(300) % 10, tmp_path / "classes.png")  # 26 of digits 0-5 and 25 of 6-9
    save_grid(images, None, tmp_path / "square.png")
    assert Image.open(tmp_path / "classes.png").size == (26 * 30 + 2, 10 * 30 + 2)
    assert Image.open(tmp_path / "square.png").size == (16 * 30 + 2, 16 * 30 + 2)
