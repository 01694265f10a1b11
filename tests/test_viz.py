"""The figures: PNGs of the promised size, what they plot checked against the maths, and the command line."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from conftest import ROOT, one_line_error
from diffusion_lab import viz
from diffusion_lab.config import CONFIG_DIR, SAMPLERS
from diffusion_lab.config_checks import check_viz_config
from diffusion_lab.diffusion import GaussianDiffusion, cosine_betas
from diffusion_lab.errors import ConfigError, error_line
from diffusion_lab.images import class_rows
from diffusion_lab.models import UNet
from diffusion_lab.plotting import save
from diffusion_lab.sampling import DDIMSampler, DDPMSampler
from diffusion_lab.viz.__main__ import main as viz_main

ALL_SAMPLERS = ", ".join(SAMPLERS)  # the options of conf/sampler/, as the messages list them

T = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The networks here are tiny: one thread is fastest, and does not fight a busy machine's other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = UNet(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=()).eval()
    torch.nn.init.normal_(net.head[-1].weight, std=0.05)  # the output layer starts at zero: make ε_θ non-trivial
    x0 = torch.rand(2, 1, 28, 28) * 2 - 1
    return net, GaussianDiffusion(cosine_betas(T)), x0


def panel(ax) -> torch.Tensor:
    """The image an axis shows (grey, drawn as RGB), back in [-1, 1]."""
    return torch.from_numpy(np.asarray(ax.images[0].get_array(), dtype=np.float32)[..., 0]) * 2 - 1


def model_space(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1, 1)[0, 0]


FIGURES = {
    "denoising_trajectory": lambda net, d, x0: viz.denoising_trajectory(net, d, DDIMSampler(d, steps=5), x0),
    "forward_strip": lambda net, d, x0: viz.forward_strip(d, x0),
    "reverse_coefficients": lambda net, d, x0: viz.reverse_coefficients(d),
    "one_shot_vs_iterative": lambda net, d, x0: viz.one_shot_vs_iterative(net, d, x0, ts=[4, 19]),
    "steps_comparison": lambda net, d, x0: viz.steps_comparison(net, d, x0, steps=(2, 5)),
    "schedule_comparison": lambda net, d, x0: viz.schedule_comparison(),
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_saves_a_png_of_figsize_times_dpi(setup, tmp_path, name):
    fig = FIGURES[name](*setup)
    width, height = fig.get_size_inches() * fig.dpi
    path = save(fig, tmp_path / f"{name}.png")
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.size == (round(width), round(height))
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < pixels.max()


def test_forward_strip_shows_x0_then_q_sample_with_one_fixed_noise(setup):
    _, diffusion, x0 = setup
    ts = [0, 10, 19]
    fig = viz.forward_strip(diffusion, x0, ts, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    axes = np.array(fig.axes).reshape(len(x0), 1 + len(ts))
    for row in range(len(x0)):
        assert torch.allclose(panel(axes[row, 0]), x0[row, 0], atol=1e-6)
        for col, t in enumerate(ts, 1):
            xt = diffusion.q_sample(x0[row:row + 1], torch.tensor([t]), eps[row:row + 1])
            assert torch.allclose(panel(axes[row, col]), model_space(xt), atol=1e-6)


def test_reverse_coefficients_plot_the_closed_forms(setup):
    _, diffusion, _ = setup
    betas = cosine_betas(T)  # independent of the module's buffers: float64 from the schedule itself
    alpha_bar = torch.cumprod(1 - betas, 0)
    alpha_bar_prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    expected = {
        r"$1/\sqrt{\alpha_t}$": 1 / (1 - betas).sqrt(),
        r"$\beta_t/\sqrt{1-\bar\alpha_t}$": betas / (1 - alpha_bar).sqrt(),
        r"$\sigma_t=\sqrt{\tilde\beta_t}$": (betas * (1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt(),
        r"$\sqrt{\beta_t}$ (fixed_large)": betas.sqrt(),
    }
    lines = {line.get_label(): line for ax in viz.reverse_coefficients(diffusion).axes for line in ax.get_lines()}
    assert set(lines) == set(expected)
    for label, values in expected.items():
        assert list(lines[label].get_xdata()) == list(range(T))
        np.testing.assert_allclose(lines[label].get_ydata(), values.numpy(), rtol=1e-5, atol=1e-7)


def test_trajectory_starts_at_the_noise_and_ends_at_the_samplers_output(setup):
    net, diffusion, _ = setup
    noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    sampler = DDPMSampler(diffusion)  # stochastic: the same generator seed must give the same chain
    fig = viz.denoising_trajectory(net, diffusion, sampler, noise, torch.Generator().manual_seed(2), snapshots=10)
    expected = sampler.sample(net, noise, torch.Generator().manual_seed(2))
    axes = np.array(fig.axes).reshape(2, 10)
    assert [ax.get_title() for ax in axes[0]][::9] == [f"t = {T - 1}", "$x_0$"]
    for row in range(2):
        assert torch.allclose(panel(axes[row, 0]), model_space(noise[row:row + 1]), atol=1e-6)
        assert torch.allclose(panel(axes[row, -1]), model_space(expected[row:row + 1]), atol=1e-6)


def test_one_shot_is_predict_x0_and_iterative_from_t0_is_one_ddpm_step(setup):
    net, diffusion, x0 = setup
    x = x0[:1]
    fig = viz.one_shot_vs_iterative(net, diffusion, x, ts=[0, 12], generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    axes = np.array(fig.axes).reshape(3, 2)
    t = torch.tensor([0])
    xt = diffusion.q_sample(x, t, torch.randn(x.shape, generator=generator))
    x0_hat = diffusion.predict_x0_from_eps(xt, t, net(xt, t))
    assert torch.allclose(panel(axes[0, 0]), model_space(xt), atol=1e-6)
    assert torch.allclose(panel(axes[1, 0]), model_space(x0_hat), atol=1e-5)
    # The last DDPM step adds no noise and returns the posterior mean at t = 0, which is x̂_0 itself.
    assert torch.allclose(panel(axes[2, 0]), model_space(x0_hat), atol=1e-5)


def test_class_rows_put_each_class_on_its_own_row_filled_with_blanks():
    images = torch.arange(7.0).reshape(7, 1, 1, 1)  # image i holds the value i
    rows, per_class = class_rows(images, torch.tensor([0, 1, 2, 0, 1, 2, 0]), blank=-1.0)
    assert per_class == 3
    assert rows.flatten().tolist() == [0, 3, 6, 1, 4, -1, 2, 5, -1]


def test_steps_comparison_rejects_bad_choices(setup):
    net, diffusion, x0 = setup
    with pytest.raises(ConfigError, match=f"allowed values are {ALL_SAMPLERS}"):
        viz.steps_comparison(net, diffusion, x0, samplers=("ddpm", "plms"))
    with pytest.raises(ConfigError, match=r"steps=\[5, 50\]"):
        viz.steps_comparison(net, diffusion, x0, steps=(5, 50))


def viz_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffusion_lab.viz", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def figure_folders(run) -> dict:
    """Every figure of a run, by path: training itself wrote viz/."""
    return {p.relative_to(run): p.read_bytes() for p in run.glob("viz*/*.png")}


@pytest.mark.slow
def test_cli_writes_six_pngs_into_a_new_folder(tiny_run):
    names = sorted(f"{name}.png" for name in viz.FIGURES)
    assert sorted(p.name for p in (tiny_run / "viz").iterdir()) == names
    before = figure_folders(tiny_run)
    result = viz_cli(f"ckpt={tiny_run}", "steps=[10,100]", "samplers=[ddim]", "n_seeds=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = {p.parent for p in tiny_run.glob("viz*/*.png")} - {tiny_run / p.parent for p in before}
    assert out.name.startswith("viz-") and sorted(p.name for p in out.iterdir()) == names
    assert result.stdout.split() == [str(out / f"{name}.png") for name in viz.FIGURES]
    assert "steps [100] skipped" in result.stderr
    assert "test images" in result.stderr  # the tiny data set is still there: real x_0


def test_figures_of_a_run_never_overwrite_earlier_ones(tiny_run):
    before = figure_folders(tiny_run)
    paths = viz.write_all(tiny_run / "checkpoints" / "last.ckpt", steps=[10], samplers=["ddim"], n_seeds=1)
    after = figure_folders(tiny_run)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing written before was touched
    assert len(after) == len(before) + len(viz.FIGURES) and all(p.exists() for p in paths)


def test_cli_unknown_key_exits_2_with_one_error_line_naming_it(run_in_process):
    error = one_line_error(run_in_process(viz_main, "ckpt=x", "colour=red"))
    assert "colour" in error and "allowed keys are ckpt, out, seed, steps, samplers, ema, n_seeds" in error


def compose_viz(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("viz", overrides=list(overrides))


@pytest.mark.parametrize("overrides,key", [(["seed=1"], "ckpt"), (["ckpt=.", "seed=abc"], "seed"),
                                           (["ckpt=.", "steps=[ten]"], "steps")])
def test_the_checks_name_the_bad_key(tmp_path, overrides, key):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").touch()  # a run directory, as far as the checks can tell
    with pytest.raises(Exception) as info:
        check_viz_config(compose_viz(*[o.replace("ckpt=.", f"ckpt={tmp_path}") for o in overrides]))
    message, status = error_line(info.value)
    assert message.startswith(key) and status == 2, message


def test_arguments_merge_over_the_defaults():
    cfg = compose_viz("ckpt=run", "steps=[10,20]", "samplers=[ddim]", "ema=false")
    assert (cfg.ckpt, list(cfg.steps), list(cfg.samplers), cfg.ema, cfg.seed, cfg.n_seeds) == (
        "run", [10, 20], ["ddim"], False, 0, 4)
