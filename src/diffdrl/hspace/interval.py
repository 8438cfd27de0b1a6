"""Choosing Asyrp's t_edit and t_boost without LPIPS (ours).

Asyrp sets t_edit where LPIPS(x, P_t) reaches 0.33 and t_boost where LPIPS(x, x_t) reaches 1.2;
LPIPS needs AlexNet weights we cannot download. Our criterion uses pixel MSE of the predicted x0,
normalised by the MSE between *unrelated* images of the same data, so 0 means "P_t is x" and 1
means "P_t is as far from x as another image is":

    d(t) = E ||P_t(x_t) - x||^2 / E ||x' - x||^2,   x_t ~ q(x_t | x), x' another image.

- t_edit = the first grid t (from the clean end) with d(t) >= ``edit_threshold`` (default 0.33, the
  Asyrp number on our scale): above it P_t has lost enough of x for an edit to redraw content.
- t_boost = the last grid t with d(t) <= ``boost_threshold`` (default 0.05): below it the content is
  fixed, so eta-1 noise only adds detail (Asyrp's reason for boosting there). We use d(t) again
  rather than a distance of x_t, because pixel MSE of x_t is dominated by the added noise and says
  nothing about content. t_boost is capped at t_edit.

Computed once on ~100 images (``measure_interval``), with eps from the model under each image's
own tokens, and stored with the edits it was used for.
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.diffusion.sampling import EDIT_STEPS
from diffdrl.diffusion.schedule import EpsModel
from diffdrl.hspace.asymmetric import ddim_grid, predicted_x0


@torch.no_grad()
def distance_curve(
    denoise: EpsModel, x0: torch.Tensor, betas: np.ndarray, steps: int = EDIT_STEPS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(grid t (S,), d(t) (S,)) for images x0 (B, C, H, W), B >= 2 (one q_sample per t)."""
    if len(x0) < 2:
        raise ValueError(f"the interval criterion needs at least 2 images, got {len(x0)}")
    t_grid, abar, _ = ddim_grid(betas, steps)
    gen = torch.Generator(x0.device).manual_seed(seed)
    unrelated = (x0 - x0.roll(1, dims=0)).pow(2).mean()
    if not unrelated > 0:
        raise ValueError("the images are all identical: the interval criterion has no scale")
    d = []
    for t, a in zip(t_grid, abar, strict=True):
        eps = torch.randn(x0.shape, generator=gen, device=x0.device)
        x_t = a**0.5 * x0 + (1 - a) ** 0.5 * eps
        p = predicted_x0(x_t, denoise(x_t, torch.full((len(x0),), int(t), device=x0.device)), float(a))
        d.append(float((p.clamp(-1, 1) - x0).pow(2).mean() / unrelated))
    return t_grid, np.asarray(d)


def choose_interval(
    t_grid: np.ndarray, d: np.ndarray, edit_threshold: float = 0.33, boost_threshold: float = 0.05
) -> dict:
    """t_edit and t_boost from a measured d(t) (module docstring); -1 = no boosting."""
    if not 0 < boost_threshold < edit_threshold:
        raise ValueError(
            f"need 0 < boost_threshold < edit_threshold, got {boost_threshold}, {edit_threshold}"
        )
    order = np.argsort(t_grid)
    t_sorted, d_sorted = t_grid[order], d[order]
    above = np.nonzero(d_sorted >= edit_threshold)[0]
    t_edit = int(t_sorted[above[0]]) if len(above) else int(t_sorted[-1])
    below = np.nonzero(d_sorted <= boost_threshold)[0]
    t_boost = int(t_sorted[below[-1]]) if len(below) else -1
    return {
        "t_edit": t_edit,
        "t_boost": min(t_boost, t_edit),
        "edit_threshold": edit_threshold,
        "boost_threshold": boost_threshold,
        "reached_edit_threshold": bool(len(above)),
        "curve": {"t": t_grid.tolist(), "d": d.tolist()},
    }


def measure_interval(
    denoise: EpsModel, x0: torch.Tensor, betas: np.ndarray, steps: int = EDIT_STEPS, **thresholds
) -> dict:
    """``choose_interval`` of ``distance_curve``: the documented t_edit / t_boost for a model."""
    t_grid, d = distance_curve(denoise, x0, betas, steps)
    return choose_interval(t_grid, d, **thresholds)
