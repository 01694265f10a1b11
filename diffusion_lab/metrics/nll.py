"""Negative log-likelihood of test images: the variational bound in bits per dimension, term by term (Ho et al.
2020, eq. 5), with its interval over images. Used by `evaluate.py nll=true`."""

import math
from collections.abc import Callable
from statistics import NormalDist

import torch
from torch import nn

from diffusion_lab.diffusion import GaussianDiffusion
from diffusion_lab.metrics.uncertainty import LEVEL
from diffusion_lab.plotting import figure
from diffusion_lab.rng import NLL_NOISE, ImageNoise
from diffusion_lab.sampling import spaced_timesteps


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
