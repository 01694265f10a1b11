"""Negative log-likelihood of test images: the variational bound in bits per dimension, term by term (Ho et al.
2020, eq. 5), with its interval over images. Used by `evaluate.py nll=true`."""

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import torch
from torch import nn

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.metrics.uncertainty import LEVEL
from diffusion_lab.plotting import figure
from diffusion_lab.rng import NLL_NOISE, ODE_NOISE, ImageNoise
from diffusion_lab.sampling import spaced_timesteps
from diffusion_lab.sampling.spacing import SigmaToTimestep

DEQUANTIZED_OFFSET = 7.0  # bits per dimension: −log2 of the width 2/256 of a dequantization bin in [−1, 1]


def bound_chain(diffusion: GaussianDiffusion, steps: int | None) -> GaussianDiffusion:
    """The chain whose bound is taken: all T timesteps, or K of them from T−1 down to 0 (`linspace`, so that the
    decoder term is at t = 0), respaced."""
    T = diffusion.num_timesteps
    return diffusion if steps in (None, T) else diffusion.respaced(spaced_timesteps(T, steps, "linspace"))


@torch.inference_mode()
def bound_terms(net: nn.Module, chain: GaussianDiffusion, x0: torch.Tensor, indices, seed: int,
                clip_denoised: bool = True, variance: str = "fixed_small",
                on_term: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_0..L_{K−1} of each image of `x0`, shape (n, K), L_0 being the decoder; L_T, shape (n,)), in bits per
    dimension. Each term's x_t is drawn from q(x_t | x_0) with noise from image `indices[i]`'s own stream
    (seed, NLL_NOISE, index), terms in order of t: the same images give the same bound in any batch."""
    noise = ImageNoise(seed, indices, device=x0.device, purpose=NLL_NOISE)
    terms = torch.empty(len(x0), chain.num_timesteps, device=x0.device)
    for i in range(chain.num_timesteps):
        t = torch.full((len(x0),), i, device=x0.device, dtype=torch.long)
        xt = chain.q_sample(x0, t, noise.randn(x0.shape[1:], x0.dtype))
        terms[:, i] = chain.vlb_terms(net(xt, chain.timestep_map[t]), x0, xt, t, clip_denoised, variance)
        if on_term is not None:
            on_term(len(x0))
    return terms, chain.prior_bits_per_dim(x0)


def mean_interval(values: torch.Tensor) -> tuple[float, list[float]]:
    """(mean, its normal-theory 95 % interval over the rows) of per-image values."""
    values = values.double()
    half = NormalDist().inv_cdf(0.5 + LEVEL / 2) * float(values.std()) / math.sqrt(len(values)) if len(values) > 1 \
        else math.nan
    mean = float(values.mean())
    return mean, [mean - half, mean + half]


def summary(terms: torch.Tensor, prior: torch.Tensor, chain: GaussianDiffusion, clip_denoised: bool,
            variance: str) -> dict:
    """eval.json's `nll`: the bound's mean over images with its interval, and each part of it: the prior L_T,
    the decoder L_0, the sum of the KL terms, and the mean of every term at its t."""
    total = prior + terms.sum(1)
    parts = {"prior": prior, "decoder": terms[:, 0], "kl": terms[:, 1:].sum(1)}
    bpd, bpd_ci = mean_interval(total)
    return {
        "bpd": bpd, "bpd_ci": bpd_ci, "n": len(total), "steps": chain.num_timesteps,
        "clip_denoised": clip_denoised, "variance": "learned" if chain.learn_sigma else variance,
        "terms": {name: dict(zip(("bpd", "bpd_ci"), mean_interval(values))) for name, values in parts.items()},
        "per_t": {"t": chain.timestep_map.tolist(), "bpd": terms.double().mean(0).tolist()},
    }


def plot_terms(result: dict):
    """Each term of the bound against its t, in bits per dimension (log scale), the prior at the end."""
    fig = figure(6, 4)
    ax = fig.subplots()
    per_t = result["per_t"]
    ax.plot(per_t["t"], per_t["bpd"], marker="." if len(per_t["t"]) <= 100 else None, label="L_t (L_0: decoder)")
    ax.scatter([per_t["t"][-1] + 1], [result["terms"]["prior"]["bpd"]], color="black", marker="x", label="prior L_T")
    ax.set(xlabel="t", ylabel="bits per dimension", yscale="log",
           title=f"variational bound: {result['bpd']:.3f} bits/dim, n = {result['n']}, {result['steps']} terms")
    ax.legend()
    return fig


def ode_log_likelihood(eps_model: Callable, diffusion: GaussianDiffusion, x: torch.Tensor, probes: torch.Tensor,
                       tolerance: float = 1e-5) -> tuple[torch.Tensor, int]:
    """(log p(x) of each image in nats, the network evaluations spent) under the probability-flow ODE (Song et
    al. 2021, eq. 13), written in σ = sqrt((1 − ᾱ)/ᾱ) for y = x_t/sqrt(ᾱ): dy/dσ = ε_θ(y/sqrt(1 + σ²), t(σ)).
    x is taken as y at σ(0); the ODE carries it to σ(T−1), where y ~ N(0, (1 + σ²)·I), and
    log p(x) = log N(y_T) + ∫ div ε_θ dσ, the divergence by Hutchinson's estimator with the fixed `probes`
    (Rademacher, one per image) as FFJORD does. Integrated by scipy's RK45 in log σ at rtol = atol = `tolerance`."""
    from scipy.integrate import solve_ivp  # only here: the bound needs no scipy

    to_t = SigmaToTimestep(torch.cumprod(1 - diffusion.betas.double().cpu(), 0).numpy())
    shape, n = x.shape, len(x)
    size = x[0].numel()
    evaluations = 0

    def velocity(log_sigma: float, state: np.ndarray) -> np.ndarray:
        """d(y, log p)/d log σ = (σ·ε_θ, σ·div ε_θ)."""
        nonlocal evaluations
        sigma = math.exp(log_sigma)
        y = torch.from_numpy(state[: n * size]).to(x).view(shape)
        t = torch.full((n,), to_t(sigma), device=x.device, dtype=x.dtype)
        with torch.enable_grad():
            y.requires_grad_(True)
            eps = eps_model(y / math.sqrt(1 + sigma * sigma), t)
            divergence = (torch.autograd.grad((eps * probes).sum(), y)[0] * probes).flatten(1).sum(1)
        evaluations += 1
        return np.concatenate([(sigma * eps).detach().flatten().cpu().double().numpy(),
                               (sigma * divergence).detach().cpu().double().numpy()])

    bounds = [math.log(to_t.sigma(0)), math.log(to_t.sigma(diffusion.num_timesteps - 1))]
    start = np.concatenate([x.detach().flatten().cpu().double().numpy(), np.zeros(n)])
    solution = solve_ivp(velocity, bounds, start, method="RK45", rtol=tolerance, atol=tolerance)
    end = torch.from_numpy(solution.y[:, -1])
    y, integral = end[: n * size].view(n, size), end[n * size:]
    variance = 1 + math.exp(2 * bounds[1])
    prior = -0.5 * (y.pow(2).sum(1) / variance + size * math.log(2 * math.pi * variance))
    return prior + integral, evaluations


def ode_inputs(images: torch.Tensor, indices, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images as continuous points of their bins, (k + u)·2/256 − 1 with u ~ U[0, 1), and a Rademacher
    probe per image), from each image's stream (seed, ODE_NOISE, index): a density at the dequantized points
    bounds the 8-bit likelihood (Theis et al. 2016)."""
    u, probes = [], []
    for g in ImageNoise(seed, indices, purpose=ODE_NOISE).generators:
        u.append(torch.rand(images.shape[1:], generator=g, dtype=torch.float64))
        probes.append(torch.randint(0, 2, images.shape[1:], generator=g).float() * 2 - 1)
    return ((images.double() + torch.stack(u)) * 2 / 256 - 1).float(), torch.stack(probes)


def ode_summary(log_likelihoods: torch.Tensor, size: int, evaluations: int, tolerance: float) -> dict:
    """eval.json's `nll.ode`: bits per dimension of the dequantized 8-bit images, −log p/(D·ln 2) + 7, with its
    interval; `network_evaluations` counts the solver's calls summed over its batches (each call evaluates every
    image of its batch, with a backward pass)."""
    bpd, bpd_ci = mean_interval(-log_likelihoods / (size * math.log(2)) + DEQUANTIZED_OFFSET)
    return {"bpd": bpd, "bpd_ci": bpd_ci, "n": len(log_likelihoods), "network_evaluations": evaluations,
            "tolerance": tolerance, "dequantization": "uniform", "trace_estimator": "Hutchinson, Rademacher"}
