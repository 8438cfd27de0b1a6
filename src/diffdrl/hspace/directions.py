"""The unsupervised direction methods on a trained EncDiff, as edits of the same source images.

Every method edits images given by (x_T, tokens): x_T comes from DDIM inversion of real images
under their own tokens (``sources``), so an unedited run retraces the image; then

| method         | found by                                 | edit                                     |
|----------------|------------------------------------------|------------------------------------------|
| ``pca``        | PCA of h_t per t over N samples (pca.py) | h_t + gamma sigma_j(t) PC_j(t), P_t only |
| ``jacobian_x`` | power iteration on dh_t/dx_t at t_edit   | x_t + gamma s_t v_j at t = t_edit, DDIM  |
| ``jacobian_c`` | exact SVD of dh_t/dc at t_edit (ours)    | tokens c + gamma sigma_j v_j, resample   |
| ``units``      | EncDiff's own units                      | unit i set to another image's value      |

Step sizes are in natural units (ours): sigma_j the standard deviation of the samples along the
direction; for ``jacobian_x``, s_t = sqrt(1 - abar_t) sqrt(D) / 10, a tenth of x_t's noise norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.sampling import EDIT_STEPS
from diffdrl.diffusion.schedule import alpha_bar_of, make_betas
from diffdrl.hspace.asymmetric import edit_sample, trajectory_h
from diffdrl.hspace.bottleneck import HSpace, denoiser_of, require_pixel_space, unet_of
from diffdrl.hspace.jacobian import Directions, full_jacobian_directions, power_iteration
from diffdrl.hspace.pca import TimestepPCA, timestep_pca

METHODS = ("pca", "jacobian_x", "jacobian_c", "units")


@dataclass
class Sources:
    """Images to edit: x0 (B, C, H, W) in [-1, 1], their tokens (B, N, d) and units, and x_T."""

    x0: torch.Tensor
    units: torch.Tensor
    tokens: torch.Tensor
    x_T: torch.Tensor


@torch.no_grad()
def sources(model, images: np.ndarray, steps: int = EDIT_STEPS) -> Sources:
    """Real uint8 images (B, H, W, C) with their tokens and their DDIM-inverted x_T."""
    require_pixel_space(model)
    units = model.encode(images)
    x0 = to_model_input(images).to(units.device)
    tokens = model.tokens(units)
    return Sources(x0, units, tokens, model.invert(x0, tokens, steps=steps))


def betas_of(model) -> np.ndarray:
    return make_betas(model.config.schedule)


def space_of(model) -> HSpace:
    return HSpace(unet_of(model))


# -- PCA ------------------------------------------------------------------------------------------


@torch.no_grad()
def fit_pca(model, src: Sources, k: int = 8, steps: int = EDIT_STEPS, progress: bool = False) -> TimestepPCA:
    """Per-timestep PCA of h_t captured along the sources' own trajectories."""
    t, hs, _ = trajectory_h(
        space_of(model), denoiser_of(model, src.tokens), src.x_T, betas_of(model), steps, progress
    )
    return timestep_pca(t, hs, k)


@torch.no_grad()
def pca_edit(
    model,
    src: Sources,
    pca: TimestepPCA,
    j: int,
    gamma: float,
    t_edit: int,
    t_boost: int = -1,
    steps: int = EDIT_STEPS,
) -> torch.Tensor:
    """Sources edited along PC j with strength gamma (negative reverses)."""
    return edit_sample(
        space_of(model),
        denoiser_of(model, src.tokens),
        src.x_T,
        betas_of(model),
        pca.delta(j, gamma),
        steps=steps,
        t_edit=t_edit,
        t_boost=t_boost,
    )


# -- Jacobians ------------------------------------------------------------------------------------


@torch.no_grad()
def trajectory_x_at(model, src: Sources, t_stop: int, steps: int = EDIT_STEPS) -> tuple[torch.Tensor, int]:
    """x_t of the sources' DDIM trajectories at the first grid time <= t_stop."""
    space, denoise = space_of(model), denoiser_of(model, src.tokens)
    captured = {}

    def keep(x, t):
        if t <= t_stop and "x" not in captured:
            captured["x"], captured["t"] = x, t
        return x

    edit_sample(space, denoise, src.x_T, betas_of(model), steps=steps, x_edit=keep)
    return captured["x"], captured["t"]


def jacobian_x(
    model, src: Sources, t_edit: int, rank: int = 8, steps: int = EDIT_STEPS, **iteration
) -> tuple:
    """(Directions of dh_t/dx_t shared by the sources, the grid t used) by power iteration."""
    x_t, t = trajectory_x_at(model, src, t_edit, steps)
    space = space_of(model)
    tokens = src.tokens

    def f(x):
        reps = len(x) // len(tokens)
        c = tokens.repeat(reps, 1, 1)
        return space.bottleneck(denoiser_of(model, c), x, torch.full((len(x),), t, device=x.device))

    return power_iteration(f, x_t, rank, **iteration), t


def jacobian_c(model, src: Sources, t_edit: int, rank: int = 8, steps: int = EDIT_STEPS) -> tuple:
    """(Directions of dh_t/dc in token space shared by the sources, grid t): exact, ours."""
    x_t, t = trajectory_x_at(model, src, t_edit, steps)
    space = space_of(model)

    def f(c):
        reps = len(c) // len(x_t)
        x = x_t.repeat(reps, 1, 1, 1)
        return space.bottleneck(denoiser_of(model, c), x, torch.full((len(x),), t, device=x.device))

    return full_jacobian_directions(f, src.tokens.detach(), rank), t


@torch.no_grad()
def jacobian_x_edit(
    model, src: Sources, d: Directions, t: int, j: int, gamma: float, steps: int = EDIT_STEPS
) -> torch.Tensor:
    """Sources with x_t moved along x-space direction j at grid time t, then plain DDIM."""
    abar = float(alpha_bar_of(betas_of(model))[t])
    scale = gamma * (1.0 - abar) ** 0.5 * d.inputs[j].numel() ** 0.5 / 10
    v = d.inputs[j].to(src.x_T)

    def move(x, s):
        return x + scale * v if s == t else x

    return edit_sample(
        space_of(model), denoiser_of(model, src.tokens), src.x_T, betas_of(model), steps=steps, x_edit=move
    )


@torch.no_grad()
def token_edit(model, src: Sources, tokens: torch.Tensor, steps: int = EDIT_STEPS) -> torch.Tensor:
    """Sources resampled from their x_T under edited ``tokens`` (B, N, d) (deterministic DDIM)."""
    return edit_sample(space_of(model), denoiser_of(model, tokens), src.x_T, betas_of(model), steps=steps)


def token_direction_std(src: Sources, d: Directions) -> torch.Tensor:
    """sigma_j: the sources' standard deviation along each token direction (k,)."""
    coords = src.tokens.flatten(1) @ d.inputs.flatten(1).T.to(src.tokens)
    return coords.std(0).clamp(min=1e-6)


@torch.no_grad()
def jacobian_c_edit(
    model, src: Sources, d: Directions, j: int, gamma: float, std=None, steps: int = EDIT_STEPS
):
    """Sources resampled under tokens moved by gamma sigma_j along token direction j."""
    std = token_direction_std(src, d) if std is None else std
    shift = (gamma * std[j] * d.inputs[j]).to(src.tokens)
    return token_edit(model, src, src.tokens + shift, steps)


@torch.no_grad()
def unit_edit(model, src: Sources, unit: int, values: torch.Tensor, steps: int = EDIT_STEPS) -> torch.Tensor:
    """Sources resampled with unit ``unit`` set to ``values`` (B,) (EncDiff's own swap)."""
    units = src.units.clone()
    units[:, unit] = values.to(units)
    return token_edit(model, src, model.tokens(units), steps)


def strip(edit, gammas, progress: bool = False, desc: str = "edits") -> torch.Tensor:
    """(G, B, C, H, W): ``edit(gamma)`` for each gamma."""
    return torch.stack([edit(g) for g in tqdm(list(gammas), disable=not progress, desc=desc, leave=False)])
