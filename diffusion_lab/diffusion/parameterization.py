"""What the network predicts (ε, x_0 or v) and the conversions among them, given x_t and ᾱ_t.

x_t = sqrt(ᾱ)·x_0 + sqrt(1 − ᾱ)·ε (Ho et al. eq. 4) and v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x_0 (Salimans & Ho 2022,
§4). Every function takes ᾱ as a tensor that broadcasts over the batch or as a float, so the same code serves
training (ᾱ gathered at t), the samplers (ᾱ of one step) and float64 checks. Min-SNR-γ weighting (Hang et al. 2023) is here too: SNR = ᾱ/(1 − ᾱ).
"""

import torch


def target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """What a network of this `prediction` should output for x_t made of (x0, eps)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0


def eps_from(prediction: str, output: torch.Tensor, xt: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """ε implied by the network's `output` at x_t: x0 → (x_t − sqrt(ᾱ)·x0)/sqrt(1 − ᾱ); v → sqrt(1 − ᾱ)·x_t + sqrt(ᾱ)·v."""
    if prediction == "eps":
        return output
    if prediction == "x0":
        return (xt - alpha_bar ** 0.5 * output) / (1 - alpha_bar) ** 0.5
    return (1 - alpha_bar) ** 0.5 * xt + alpha_bar ** 0.5 * output


def x0_from(prediction: str, output: torch.Tensor, xt: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """x_0 implied by the network's `output` at x_t: ε → (x_t − sqrt(1 − ᾱ)·ε)/sqrt(ᾱ); v → sqrt(ᾱ)·x_t − sqrt(1 − ᾱ)·v."""
    if prediction == "eps":
        return (xt - (1 - alpha_bar) ** 0.5 * output) / alpha_bar ** 0.5
    if prediction == "x0":
        return output
    return alpha_bar ** 0.5 * xt - (1 - alpha_bar) ** 0.5 * output


def min_snr_weight(prediction: str, alpha_bar: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """The Min-SNR-γ weight of the MSE on this `prediction`'s target: min(SNR, γ) on the x_0 error, which is
    min(SNR, γ)/SNR on the ε error and min(SNR, γ)/(SNR + 1) on the v error (Hang et al. 2023, eq. 9)."""
    snr = alpha_bar / (1 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    return {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[prediction]
