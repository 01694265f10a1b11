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
from diffusion_lab.diffusion import Denoiser, GaussianDiffusion, cosine_betas
from diffusion_lab.files import fresh_dir
from diffusion_lab.generation import Share, generate
from diffusion_lab.images import save_grid
from diffusion_lab.models import UNet
from diffusion_lab.rng import seeded_generator
from diffusion_lab.sampling import DDPMSampler

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


def test_a_budget_of_network_evaluations_sets_the_steps(tiny_run, tmp_path, run_in_process):
    result = run_in_process(sample_main, f"ckpt={tiny_run}", "sampler=heun", "sampler.spacing=karras", "nfe=7",
                            "n=2", f"out_dir={tmp_path / 'heun'}", "progress=false")
    assert result.returncode == 0, result.stderr[-3000:]
    images, settings = read_samples(tmp_path / "heun")
    assert images.shape == (2, 28, 28) and np.isfinite(images).all()
    assert (settings["sampler_name"], settings["spacing"], settings["steps"], settings["nfe"]) == (
        "heun+karras", "karras", 4, 7)
    assert len(settings["timesteps"]) == 7 and settings["timesteps"][0] == 49


@pytest.mark.slow
def test_two_processes_split_the_work_and_draw_the_images_one_process_draws(tiny_run, tmp_path, run_in_process):
    args = [f"ckpt={tiny_run}", "sampler=ddpm", "steps=4", "n=5", "accelerator=cpu", "progress=false"]
    result = run_cli("sample.py", *args, "devices=2", f"out_dir={tmp_path / 'ddp'}")
    assert result.returncode == 0, result.stderr[-3000:]
    images, settings = read_samples(tmp_path / "ddp")
    assert images.shape == (5, 28, 28) and settings["world_size"] == 2  # 3 + 3 drawn, exactly 5 kept
    assert len(np.unique(images.reshape(5, -1), axis=0)) == 5  # each image its own noise: no image twice
    one = run_in_process(sample_main, *args, "devices=1", "batch_size=2", f"out_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    assert np.array_equal(read_samples(tmp_path / "one")[0], images)  # image i: stream (seed, i), wherever drawn


def test_an_image_is_the_same_whatever_batch_or_process_draws_it():
    """Image i has its own noise stream (seed, i): 12 images drawn in one batch, in batches of 5, or as two
    processes' shares of 6 (in batches of 4) are the same images, exactly, with a stochastic sampler."""
    torch.manual_seed(0)
    net = UNet(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=()).eval()
    torch.nn.init.normal_(net.head[-1].weight, std=0.05)  # the output layer starts at zero: make ε_θ non-trivial
    diffusion = GaussianDiffusion(cosine_betas(20))
    sampler, denoiser = DDPMSampler(diffusion, steps=5), Denoiser(net, diffusion)

    def draw(n: int, batch_size: int, first: int = 0) -> torch.Tensor:
        return generate(denoiser, sampler, n, (1, 28, 28), 3, batch_size, "cpu", first=first)

    whole = draw(12, 12)
    shares = [Share(12, rank, 2) for rank in (0, 1)]
    assert torch.equal(draw(12, 5), whole)
    assert torch.equal(generate(denoiser, sampler, 12, (1, 28, 28), 3, 5, "cpu", full_batches=True), whole)
    assert torch.equal(torch.cat([draw(s.per_rank, 4, s.first) for s in shares]), whole)
    assert len(torch.unique(whole.flatten(1), dim=0)) == 12  # and each image its own
    assert not torch.equal(generate(denoiser, sampler, 12, (1, 28, 28), 4, 12, "cpu"), whole)  # another seed


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
