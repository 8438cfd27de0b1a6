"""The asymmetric DDIM step and Asyrp's three-phase editing sampler (Kwon et al., ICLR 2023).

DDIM writes one step as (Song et al. 2021, eq. 12)

    x_{t-1} = sqrt(abar_{t-1}) P_t(eps) + D_t(eps) + sigma_t z,
    P_t(eps) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)          (the predicted x0)
    D_t(eps) = sqrt(1 - abar_{t-1} - sigma_t^2) eps                  (the direction to x_t)
    sigma_t  = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}).

Shifting eps in both terms nearly cancels (Asyrp's Theorem 1), so an edit enters P_t only:
x_{t-1} = sqrt(abar_{t-1}) P_t(eps(x_t | h_t + dh_t)) + D_t(eps(x_t)). The sampler runs

1. the asymmetric step (eta 0) for t in [T, t_edit];
2. plain DDIM (eta 0) for t in (t_boost, t_edit);
3. stochastic DDIM (eta 1, Asyrp's "quality boosting") for t <= t_boost.

We write the loop ourselves (diffusers' ``DDIMScheduler.step`` takes one eps for both terms); the
timestep grid is diffusers' trailing DDIM grid, the one ``diffusion.samplers.sample`` uses, so with
dh = 0 and t_boost < 0 the two samplers retrace the same path. ``choose_edit_interval`` picks
t_edit and t_boost without LPIPS (module ``interval``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.diffusion.samplers import make_scheduler
from diffdrl.diffusion.sampling import EDIT_STEPS
from diffdrl.diffusion.schedule import EpsModel, alpha_bar_of
from diffdrl.hspace.bottleneck import HSpace

Delta = torch.Tensor | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None  # dh, or dh(h_t, t)


def ddim_grid(betas: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, abar_t, abar_prev) per step of the trailing DDIM grid, float64 tables (as diffusers)."""
    if not 1 <= steps <= len(betas):
        raise ValueError(f"steps must be in [1, {len(betas)}], got {steps}")
    scheduler = make_scheduler("ddim", betas)
    scheduler.set_timesteps(steps)
    t = scheduler.timesteps.numpy().astype(np.int64)
    abar = alpha_bar_of(betas)
    prev = t - len(betas) // steps
    # the last step lands on the clean image, as the library's DDIM does (set_alpha_to_one)
    final = scheduler.final_alpha_cumprod.item()
    abar_prev = np.where(prev >= 0, abar[np.clip(prev, 0, None)], final)
    return t, abar[t], abar_prev


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: float) -> torch.Tensor:
    """P_t(eps) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - (1.0 - abar_t) ** 0.5 * eps) / abar_t**0.5


def asymmetric_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    eps_edit: torch.Tensor,
    abar_t: float,
    abar_prev: float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_{t-1} = sqrt(abar_prev) P_t(eps_edit) + D_t(eps) + sigma_t z; eps_edit = eps is DDIM."""
    var = eta**2 * (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
    x_prev = (
        abar_prev**0.5 * predicted_x0(x_t, eps_edit, abar_t) + max(1.0 - abar_prev - var, 0.0) ** 0.5 * eps
    )
    if var > 0:
        if noise is None:
            raise ValueError("a stochastic step (eta > 0) needs noise")
        x_prev = x_prev + var**0.5 * noise
    return x_prev


def check_interval(t_edit: int, t_boost: int, timesteps: int) -> None:
    """Errors for an edit interval outside [0, T) or with t_boost above t_edit."""
    if not 0 <= t_edit < timesteps:
        raise ValueError(f"t_edit must be in [0, {timesteps}) (the model's timesteps), got {t_edit}")
    if not -1 <= t_boost <= t_edit:
        raise ValueError(f"t_boost must be in [-1, t_edit={t_edit}] (-1: no quality boosting), got {t_boost}")


def delta_at(dh: Delta, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
    if dh is None:
        return None
    return dh(h, t) if callable(dh) else dh


@torch.no_grad()
def edit_sample(
    space: HSpace,
    denoise: EpsModel,
    x_T: torch.Tensor,
    betas: np.ndarray,
    dh: Delta = None,
    *,
    steps: int = EDIT_STEPS,
    t_edit: int = 0,
    t_boost: int = -1,
    generator: torch.Generator | None = None,
    progress: bool = False,
    x_edit: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Images x_0 (B, C, H, W) in [-1, 1] from x_T, with ``dh`` added to h_t in P_t for t >= t_edit.

    ``dh``: a tensor broadcast against h_t (B, C, s, s), or ``dh(h_t, t)`` (a learned DeltaBlock,
    a per-timestep PCA direction), or None (no edit: the three-phase sampler only). ``x_edit(x_t,
    t)`` optionally replaces x_t before the step at a grid time t (the pullback edit of x-space
    directions, Park et al.). ``t_boost = -1`` turns quality boosting off (eta 0 throughout).
    """
    check_interval(t_edit, t_boost, len(betas))
    grid = ddim_grid(betas, steps)
    x = x_T
    for t, abar_t, abar_prev in tqdm(
        list(zip(*grid, strict=True)), disable=not progress, desc="edit sampling", leave=False
    ):
        if x_edit is not None:
            x = x_edit(x, int(t))
        tt = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
        if dh is not None and t >= t_edit:
            eps, eps_edit, _ = space.edited(denoise, x, tt, lambda h, s: delta_at(dh, h, s))
        else:
            eps = eps_edit = denoise(x, tt)
        eta = 1.0 if t <= t_boost else 0.0
        noise = None
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = asymmetric_step(x, eps, eps_edit, float(abar_t), float(abar_prev), eta, noise)
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def trajectory_h(
    space: HSpace,
    denoise: EpsModel,
    x_T: torch.Tensor,
    betas: np.ndarray,
    steps: int = EDIT_STEPS,
    progress: bool = False,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(grid t (S,), h_t (S, B, C, s, s), x_0) along a deterministic DDIM trajectory from x_T."""
    grid = ddim_grid(betas, steps)
    x, hs = x_T, []
    for t, abar_t, abar_prev in tqdm(
        list(zip(*grid, strict=True)), disable=not progress, desc="h_t capture", leave=False
    ):
        state = space.capture(denoise, x, torch.full((len(x),), int(t), device=x.device, dtype=torch.long))
        hs.append(state.h)
        x = asymmetric_step(x, state.eps, state.eps, float(abar_t), float(abar_prev))
    return grid[0], torch.stack(hs), x.clamp(-1.0, 1.0)
