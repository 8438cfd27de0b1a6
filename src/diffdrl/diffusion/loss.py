"""The plain diffusion objective EncDiff trains with: predict the added noise (epsilon)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffdrl.diffusion.schedule import NoiseSchedule

LOSSES = ("l1", "mse")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> eps prediction


def epsilon_loss(
    denoise: Denoiser,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    kind: str = "l1",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E_{t, eps ~ N(0, I)} |eps - eps_theta(x_t, t)|  (L1 in the code, MSE in the paper), with
    t ~ U{0..T-1} unless the schedule biases it towards high noise.

    ``generator`` makes t and eps reproducible; it must live on ``x0``'s device.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    b = x0.shape[0]
    t = schedule.sample_timesteps(b, x0.device, generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = schedule.q_sample(x0, t, eps)
    eps_hat = denoise(x_t, t).float()
    err = eps_hat - eps
    return err.abs().mean() if kind == "l1" else err.square().mean()
