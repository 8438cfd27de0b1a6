"""The plain diffusion objective EncDiff trains with: predict the added noise (epsilon)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffdrl.diffusion.schedule import NoiseSchedule

LOSSES = ("l1", "mse")
# "none": the paper's plain epsilon loss. "truncated_snr" (Salimans & Ho 2022): the error is
# measured in x0 space where the signal-to-noise ratio is below 1 (high noise) and in epsilon space
# above it. At high noise an epsilon error hides a large x0 error, so the plain loss gives the
# tokens, which only matter there, a weak gradient; this weighting is meant to undo that. On a
# small CPU budget it learnt slower than the plain loss (docs/small_budget.md).
WEIGHTINGS = ("none", "truncated_snr")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> eps prediction


def epsilon_loss(
    denoise: Denoiser,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    kind: str = "l1",
    generator: torch.Generator | None = None,
    weighting: str = "none",
) -> torch.Tensor:
    """E_{t, eps ~ N(0, I)} w_t |eps - eps_theta(x_t, t)|  (L1 in the code, MSE in the paper), with
    t ~ U{0..T-1} unless the schedule biases it towards high noise, and w_t = 1 unless
    ``weighting`` says otherwise (``WEIGHTINGS``, ``snr_weight``).

    ``generator`` makes t and eps reproducible; it must live on ``x0``'s device.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    b = x0.shape[0]
    t = schedule.sample_timesteps(b, x0.device, generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = schedule.q_sample(x0, t, eps)
    eps_hat = denoise(x_t, t).float()
    err = eps_hat - eps
    if weighting == "none":
        return err.abs().mean() if kind == "l1" else err.square().mean()
    per_sample = (err.abs() if kind == "l1" else err.square()).flatten(1).mean(1)
    return (snr_weight(schedule, t, kind) * per_sample).mean()


def snr_weight(schedule: NoiseSchedule, t: torch.Tensor, kind: str) -> torch.Tensor:
    """Truncated-SNR weights for an epsilon loss: max(1, 1 / SNR_t) for MSE, and its square root
    for L1 (x0 - x0_hat = (eps - eps_hat) / sqrt(SNR_t)); SNR_t = alpha_bar_t / (1 - alpha_bar_t)."""
    alpha_bar = schedule.alpha_bar[t]
    inverse_snr = (1.0 - alpha_bar) / alpha_bar
    return inverse_snr.clamp(min=1.0).pow(1.0 if kind == "mse" else 0.5)
