"""Figures of a trained DDPM: the reverse chain, the forward process, the reverse-step coefficients, one-shot
versus iterative denoising, samplers against step counts, and noise schedules.

Every figure function returns a matplotlib `Figure` of a fixed size (see `diffusion_lab.plotting`); images are
in model space, [-1, 1]. The command line is `python -m diffusion_lab.viz` (this package's `__main__`).
"""

import itertools
import logging
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from diffusion_lab import rules
from diffusion_lab.checkpoints import load_run
from diffusion_lab.config import SAMPLERS, SCHEDULES, build_option
from diffusion_lab.data import load_split
from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.errors import ConfigError
from diffusion_lab.files import fresh_dir
from diffusion_lab.images import to_model_space
from diffusion_lab.plotting import figure, image_axes, save, show
from diffusion_lab.sampling import DDPMSampler, Sampler

log = logging.getLogger(__name__)

FORWARD_FRACTIONS = (0, 0.05, 0.1, 0.25, 0.5, 0.75, 1)  # t = 0, 50, 100, 250, 500, 750, 999 at T = 1000
DENOISE_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1)
FIGURES = ("denoising_trajectory", "forward_strip", "reverse_coefficients", "one_shot_vs_iterative",
           "steps_comparison", "schedule_comparison")


def scaled_ts(T: int, fractions=FORWARD_FRACTIONS) -> list[int]:
    """The timesteps at `fractions` of a T-step chain, in {0..T−1}, ascending and distinct."""
    return sorted({min(T - 1, round(f * T)) for f in fractions})


@torch.inference_mode()
def denoising_trajectory(net: nn.Module, diffusion: GaussianDiffusion, sampler: Sampler, noise: torch.Tensor,
                         generator: torch.Generator | None = None, snapshots: int = 10) -> Figure:
    """x at `snapshots` points spread evenly over the sampler's chain, from the noise to the sample x_0.

    One row per image of `noise`; column p shows x after p of the chain's K evaluations (its steps, but for
    Heun), labelled with the model's t there.
    """
    K = sampler.network_evaluations
    positions = torch.linspace(0, K, snapshots).round().long().unique().tolist()
    xs = {0: noise}

    def keep(i: int, x: torch.Tensor) -> None:
        if i + 1 in positions:
            xs[i + 1] = x

    sampler.sample(net, noise, generator, callback=keep)
    fig, axes = image_axes(len(noise), len(positions), panel=1.0)
    for col, p in enumerate(positions):
        title = f"t = {sampler.timesteps[p]:.4g}" if p < K else "$x_0$"
        for row in range(len(noise)):
            show(axes[row, col], xs[p][row:row + 1], title="" if row else title)
    fig.suptitle(f"{type(sampler).__name__}, {sampler.num_steps} steps: noise → sample")
    return fig


@torch.inference_mode()
def forward_strip(diffusion: GaussianDiffusion, x0: torch.Tensor, ts=None,
                  generator: torch.Generator | None = None) -> Figure:
    """x_0 and x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε (Ho et al. eq. 4) with one fixed ε per image, for t in ts."""
    ts = scaled_ts(diffusion.num_timesteps) if ts is None else list(ts)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    fig, axes = image_axes(len(x0), 1 + len(ts), panel=1.25)
    for col, t in enumerate([None, *ts]):
        xt = x0 if t is None else diffusion.q_sample(x0, torch.full((len(x0),), t, device=x0.device), eps)
        title = "$x_0$" if t is None else rf"t = {t}" "\n" rf"$\bar\alpha_t$ = {diffusion.alphas_cumprod[t]:.3g}"
        for row in range(len(x0)):
            show(axes[row, col], xt[row:row + 1], title="" if row else title)
    fig.suptitle(r"Forward process $q(x_t \mid x_0)$")
    return fig


def reverse_coefficients(diffusion: GaussianDiffusion) -> Figure:
    """The terms of x_{t−1} = 1/sqrt(α_t)·(x_t − β_t/sqrt(1 − ᾱ_t)·ε_θ) + σ_t·z (Ho et al. Algorithm 2)
    over t, with σ_t = sqrt(β̃_t) (eq. 7) beside the alternative sqrt(β_t)."""
    d = {name: buf.double().cpu().numpy() for name, buf in diffusion.named_buffers()}
    t = range(diffusion.num_timesteps)
    panels = [  # (y scale, lines): the first term stays near 1, the others span decades
        ("linear", [(r"$1/\sqrt{\alpha_t}$", 1 / d["alphas"] ** 0.5)]),
        ("log", [(r"$\beta_t/\sqrt{1-\bar\alpha_t}$", d["betas"] / d["sqrt_one_minus_alphas_cumprod"])]),
        ("log", [(r"$\sigma_t=\sqrt{\tilde\beta_t}$", d["posterior_variance"] ** 0.5),
                 (r"$\sqrt{\beta_t}$ (fixed_large)", d["betas"] ** 0.5)]),
    ]
    fig = figure(12, 3.5)
    for ax, (yscale, lines) in zip(fig.subplots(1, 3), panels):
        for style, (label, values) in zip(("-", "--"), lines):
            ax.plot(t, values, style, label=label)
        ax.set(title=lines[0][0], xlabel="t", yscale=yscale)
    ax.legend()
    return fig


@torch.inference_mode()
def one_shot_vs_iterative(net: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor, ts=None,
                          generator: torch.Generator | None = None) -> Figure:
    """For each t: x_t from q(x_t | x_0), the one-shot x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε_θ(x_t, t))/sqrt(ᾱ_t)
    (Ho et al. eq. 15), and the ancestral DDPM chain run from the same x_t down to x_0."""
    ts = scaled_ts(diffusion.num_timesteps, DENOISE_FRACTIONS) if ts is None else list(ts)
    sampler = DDPMSampler(diffusion)
    fig, axes = image_axes(3, len(ts), panel=1.5)
    for col, t in enumerate(ts):
        t_batch = torch.full((len(x0),), t, device=x0.device, dtype=torch.long)
        xt = diffusion.q_sample(x0, t_batch, torch.randn(x0.shape, generator=generator, device=x0.device))
        x = xt
        for i in range(sampler.timesteps.index(t), sampler.num_steps):
            x = sampler.advance(net, i, x, generator)
        x0_hat = diffusion.predict_x0_from_eps(xt, t_batch, net(xt, t_batch))
        for row, (images, label) in enumerate([(xt, "$x_t$"), (x0_hat, r"one-shot $\hat x_0$"), (x, "iterative DDPM")]):
            show(axes[row, col], images, title="" if row else f"t = {t}", ylabel="" if col else label)
    return fig


def check_grid(samplers, steps, T: int) -> None:
    """ConfigError unless every sampler name is known and every step count is in 1..T."""
    if unknown := [s for s in samplers if s not in SAMPLERS]:
        raise ConfigError(f"samplers={list(samplers)}: unknown {unknown}; allowed values are {', '.join(SAMPLERS)}")
    rules.check_step_counts("steps", steps, T)


@torch.inference_mode()
def steps_comparison(net: nn.Module, diffusion: GaussianDiffusion, noise: torch.Tensor,
                     samplers=("ddpm", "ddim", "dpm_solver"), steps=(50, 100, 200), generator_seed: int = 0) -> Figure:
    """The same noise sampled by each sampler (rows) at each step count (columns), titled with the seconds it
    took; a last column runs full-T ancestral DDPM, the chain the model was trained for. Stochastic samplers
    get a generator seeded with `generator_seed` in every cell."""
    T = diffusion.num_timesteps
    check_grid(samplers, steps, T)
    columns = sorted(set(steps)) + ([] if T in steps else [T])
    fig, axes = image_axes(len(samplers), len(columns), panel=1.5)
    for (row, name), (col, K) in itertools.product(enumerate(samplers), enumerate(columns)):
        ax = axes[row, col]
        if K not in steps and name != "ddpm":
            ax.set_axis_off()
            continue
        generator = torch.Generator(noise.device).manual_seed(generator_seed)
        start = time.perf_counter()
        x = build_option("sampler", name)(diffusion, steps=K).sample(net, noise, generator).cpu()  # .cpu() waits for a GPU
        show(ax, x, title=f"{K} steps, {time.perf_counter() - start:.1f} s", ylabel=name if col == 0 else "")
    return fig


def schedule_comparison(T: int = 1000) -> Figure:
    """ᾱ_t and the log signal-to-noise ratio log(ᾱ_t/(1 − ᾱ_t)) (Kingma et al. 2021) against t/T for each
    schedule that is valid at this T."""
    fig = figure(10, 4)
    ax_alpha, ax_snr = fig.subplots(1, 2)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T  # ᾱ_t holds t + 1 noising steps
    for name in SCHEDULES:
        try:
            alpha_bar = torch.cumprod(1 - build_option("schedule", name, T=T), 0)
        except ConfigError as err:
            log.info("schedule comparison: %s left out (%s)", name, err)
            continue
        ax_alpha.plot(u, alpha_bar, label=name)
        ax_snr.plot(u, torch.log(alpha_bar / (1 - alpha_bar)), label=name)
    ax_alpha.set(title=rf"$\bar\alpha_t$, T = {T}", xlabel="t / T")
    ax_snr.set(title=r"log-SNR $\log(\bar\alpha_t / (1-\bar\alpha_t))$", xlabel="t / T")
    ax_alpha.legend()
    return fig


def evaluations_per_image(diffusion: GaussianDiffusion, steps=(50, 100, 200),
                          samplers=("ddpm", "ddim", "dpm_solver")) -> int:
    """Network evaluations per image row of `draw_all`: the full-T trajectory, the DDPM chains from each t of
    one-shot-vs-iterative (and its one-shot x̂_0), and every cell of the steps comparison."""
    T = diffusion.num_timesteps
    steps = [k for k in steps if k <= T]
    one_shot = sum(t + 2 for t in scaled_ts(T, DENOISE_FRACTIONS))
    cells = sum(build_option("sampler", name)(diffusion, steps=K).network_evaluations
                for name in samplers for K in sorted(set(steps)) + ([] if T in steps else [T])
                if K in steps or name == "ddpm")
    return T + one_shot + cells


def draw_all(net: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor, out_dir: str | Path, seed: int = 0,
             steps=(50, 100, 200), samplers=("ddpm", "ddim", "dpm_solver")) -> list[Path]:
    """The six figures for a network, its diffusion and real images `x0` (one row or seed each), saved as PNGs
    in a new folder (`out_dir`, else `out_dir-1`, …: nothing is overwritten); returns their paths. Step
    counts above T are skipped. Reproducible for a given `seed`."""
    T, device = diffusion.num_timesteps, x0.device
    if skipped := [k for k in steps if k > T]:
        log.info("steps %s skipped: more than the run's T = %d", skipped, T)
    steps = [k for k in steps if k not in skipped]
    check_grid(samplers, steps, T)
    noise = torch.randn(x0.shape, generator=torch.Generator(device).manual_seed(seed), device=device)

    def fresh_generator() -> torch.Generator:
        return torch.Generator(device).manual_seed(seed + 1)  # chain noise independent of `noise`

    figures = [
        denoising_trajectory(net, diffusion, DDPMSampler(diffusion), noise, fresh_generator()),
        forward_strip(diffusion, x0, generator=fresh_generator()),
        reverse_coefficients(diffusion),
        one_shot_vs_iterative(net, diffusion, x0, generator=fresh_generator()),
        steps_comparison(net, diffusion, noise, samplers, steps, generator_seed=seed + 1),
        schedule_comparison(T),
    ]
    out = fresh_dir(out_dir)
    return [save(fig, out / f"{name}.png") for name, fig in zip(FIGURES, figures)]


def write_all(path_or_run, out_dir=None, seed: int = 0, steps=(50, 100, 200), samplers=("ddpm", "ddim", "dpm_solver"),
              ema: bool = True, n_seeds: int = 4) -> list[Path]:
    """`draw_all` for a trained run (default folder `<run>/viz`), with its first `n_seeds` test images as x_0,
    or samples from the model where the data set cannot be read."""
    rules.IMAGE_COUNT.check("n_seeds", n_seeds)
    module, cfg, run_dir = load_run(path_or_run, ema=ema)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    try:
        images, _ = load_split(cfg.dataset.name, cfg.dataset.data_dir, train=False, download=False)
        x0 = to_model_space(images[:n_seeds]).to(device)
        log.info("x_0 for the forward and one-shot figures: the first %d %s test images", len(x0), cfg.dataset.name)
    except ConfigError as err:
        log.info("no test images (%s); x_0 for the forward and one-shot figures is sampled from the model", err)
        generator = torch.Generator(device).manual_seed(seed + 2)
        x0 = module.sample(torch.randn(n_seeds, *module.image_shape, generator=generator, device=device), generator)
    return draw_all(module.denoiser(), module.diffusion, x0, out_dir if out_dir is not None else run_dir / "viz", seed,
                    steps, samplers)
